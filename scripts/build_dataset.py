#!/usr/bin/env python
"""Converts a manually downloaded chest X-ray folder to a TFDS ArrayRecord dataset.

  python scripts/build_dataset.py kermany --manual_dir ~/data/chest_xray \
      --data_dir ~/tensorflow_datasets --size 256
  python scripts/build_dataset.py generic_segmentation_folder \
      --manual_dir ../shared/data/lung_masks_openist --data_dir /tmp/tfds --size 128 \
      --val_fraction 0.1

No TensorFlow needed. Read the result with
``multimix_jax.datasets.builders.make_builder(NAME, DATA_DIR, SIZE, **same options)
.as_data_source(split='train')``. On failure nothing is left in --data_dir.
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


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('name', choices=sorted(builders.BUILDERS), help='dataset builder')
  p.add_argument('--manual_dir', required=True, help='the downloaded / unpacked folder')
  p.add_argument('--data_dir', required=True, help='TFDS data dir to write into')
  p.add_argument('--size', type=int, default=256, help='output side length (default 256)')
  p.add_argument('--overwrite', action='store_true', help='rebuild if it already exists')
  p.add_argument('--config_name', default=None, help='override the config name')
  p.add_argument('--workers', type=int, default=None, help='decoding threads')
  g = p.add_argument_group('builder options (only those a builder takes are allowed)')
  g.add_argument('--split_seed', type=int, default=None)
  g.add_argument('--val_fraction', type=float, default=None)
  g.add_argument('--test_fraction', type=float, default=None)
  g.add_argument('--class_names', default=None,
                 help='comma-separated class folder names, label = position')
  g.add_argument('--allow_unknown', action='store_true', default=None,
                 help='skip unknown class folders instead of failing')
  g.add_argument('--strict', action='store_true', default=None,
                 help='fail on an image without mask instead of skipping it')
  g.add_argument('--mask_size_policy', choices=builders.MASK_SIZE_POLICIES, default=None)
  g.add_argument('--max_normal', type=int, default=None, help='NIH: NORMAL cap (0 = all)')
  g.add_argument('--jsrt_shape', type=int, default=None, help='JSRT raw side (2048)')
  g.add_argument('-v', '--verbose', action='store_true')
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
  options = {k: getattr(args, k) for k in (
      'split_seed', 'val_fraction', 'test_fraction', 'allow_unknown', 'strict',
      'mask_size_policy', 'max_normal', 'jsrt_shape') if getattr(args, k) is not None}
  if args.class_names:
    options['class_names'] = tuple(c.strip() for c in args.class_names.split(',') if c.strip())
  try:
    builder = builders.build_dataset(
        args.name, args.manual_dir, args.data_dir, args.size, overwrite=args.overwrite,
        config_name=args.config_name, workers=args.workers, **options)
  except (DataError, TypeError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(builders.summary_text(builder))
  return 0


if __name__ == '__main__':
  sys.exit(main())
