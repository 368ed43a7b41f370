#!/usr/bin/env python
"""Converts a downloaded chest X-ray folder to a TFDS ArrayRecord dataset (no TensorFlow).

  python scripts/build_dataset.py kermany --manual_dir ~/data/chest_xray \\
      --data_dir ~/tensorflow_datasets --size 256

Read it back with ``load_source({'kind': 'tfds', 'name': NAME, 'data_dir': DIR}, task, SIZE)``.
Each dataset's splits are fixed (configs/paper.py). Running it again with the same folder
reuses the dataset; a different folder (or changed files) into the same --data_dir and --size
is REFUSED with exit code 2 unless --overwrite. On failure nothing is left in --data_dir.
"""

from __future__ import annotations

import argparse
import logging
import sys

from multimix_jax.datasets import builders
from multimix_jax.errors import DataError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(builders.BUILDERS), help="dataset builder")
    p.add_argument("--manual_dir", required=True, help="the downloaded / unpacked folder")
    p.add_argument("--data_dir", required=True, help="TFDS data dir to write into")
    p.add_argument("--size", type=int, default=256, help="output side length (default 256)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a dataset built earlier from another folder")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        builder = builders.build_dataset(args.name, args.manual_dir, args.data_dir, args.size,
                                         overwrite=args.overwrite)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    md = builder.info.metadata
    print(f"{builder.data_path} from {md['source']}")
    for split, info in builder.info.splits.items():
        print(f"  {split}: {info.num_examples} examples")
    for reason, n in md["skipped"].items():
        print(f"  skipped {reason}: {n} (e.g. {', '.join(md['skipped_examples'][reason][:3])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
