#!/usr/bin/env python
"""Converts a downloaded chest X-ray folder to a TFDS ArrayRecord dataset (no TensorFlow).

  python scripts/build_dataset.py kermany --manual_dir ~/data/chest_xray \\
      --data_dir ~/tensorflow_datasets --size 256

Read it back with ``load_source({'kind': 'tfds', 'name': NAME, 'data_dir': DIR}, task, SIZE)``.
Running it again with the same folder and options reuses the dataset; a different folder
(or changed files) or other options into the same --data_dir and --size is REFUSED with
exit code 2 unless --overwrite. On failure nothing is left in --data_dir.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

try:
    import multimix_jax  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multimix_jax.datasets import builders  # noqa: E402
from multimix_jax.datasets.image_io import DataError  # noqa: E402

OPTIONS = {"split_seed": int, "val_fraction": float, "test_fraction": float, "max_normal": int,
           "jsrt_shape": int, "mask_size_policy": str}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(builders.BUILDERS), help="dataset builder")
    p.add_argument("--manual_dir", required=True, help="the downloaded / unpacked folder")
    p.add_argument("--data_dir", required=True, help="TFDS data dir to write into")
    p.add_argument("--size", type=int, default=256, help="output side length (default 256)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a dataset built earlier from another folder or with other options")
    g = p.add_argument_group("builder options (each builder takes only some; defaults per builder)")
    for name, kind in OPTIONS.items():
        g.add_argument(f"--{name}", type=kind, default=None, choices=(
            builders.MASK_SIZE_POLICIES if name == "mask_size_policy" else None))
    g.add_argument("--class_names", default=None,
                   help="comma-separated class folder names, label = position")
    g.add_argument("--allow_unknown", action="store_true", default=None,
                   help="skip unknown class folders instead of failing")
    g.add_argument("--strict", action="store_true", default=None,
                   help="fail on an image without mask instead of skipping it")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    options = {k: getattr(args, k) for k in (*OPTIONS, "allow_unknown", "strict")}
    if args.class_names:
        options["class_names"] = [c.strip() for c in args.class_names.split(",") if c.strip()]
    try:
        builder = builders.build_dataset(args.name, args.manual_dir, args.data_dir, args.size,
                                         overwrite=args.overwrite, **options)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    md = builder.info.metadata
    print(f"{builder.data_path} from {md['source']}, options {md['options']}")
    for split, info in builder.info.splits.items():
        print(f"  {split}: {info.num_examples} examples")
    for reason, n in md["skipped"].items():
        print(f"  skipped {reason}: {n} (e.g. {', '.join(md['skipped_examples'][reason][:3])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
