"""Real chest X-ray data (docs/multimix.md, Data).

* :mod:`.image_io` -- any file to uint8 grayscale, masks to {0, 1}, resizing.
* :mod:`.layouts` -- readers of each download's folder layout (records + skip summary).
* :mod:`.folders` -- records / folders to numpy arrays (what ``kind='folder'`` reads).
* :mod:`.builders` -- TFDS ArrayRecord builders; the only module importing
  tensorflow_datasets, so import it explicitly.
"""

from multimix_jax.datasets.image_io import DataError, load_grayscale, load_mask, resize_image
from multimix_jax.datasets.folders import load_folder

__all__ = ["DataError", "load_folder", "load_grayscale", "load_mask", "resize_image"]
