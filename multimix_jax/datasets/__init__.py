"""Real chest X-ray datasets: pixel I/O, folder layouts, TFDS builders.

* :mod:`.image_io` -- decode any file to uint8 grayscale, masks to {0, 1}, resize.
* :mod:`.layouts` -- readers of each manual-download layout -> records + skip summary.
* :mod:`.builders` -- TFDS ArrayRecord builders (no TensorFlow), ``build_dataset``,
  and ``load_folder_arrays`` (generic folder -> numpy, no TFDS).

``builders`` imports tensorflow_datasets; it is loaded lazily on first use of
one of its names from this package.
"""

from multimix_jax.datasets.image_io import (
    DataError, is_ignorable, load_grayscale, load_jsrt_img, load_mask, resize_image,
    resize_mask)
from multimix_jax.datasets.layouts import (
    Record, SkipSummary, read_classification_folder, read_jsrt, read_kermany,
    read_montgomery, read_nih_pneumonia, read_segmentation_folder, read_shenzhen)

_LAZY = ('BUILDERS', 'build_dataset', 'load_example', 'load_folder_arrays', 'load_records',
         'make_builder', 'seeded_split', 'summary_text')


def __getattr__(name):
  if name in _LAZY:
    from multimix_jax.datasets import builders
    return getattr(builders, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
