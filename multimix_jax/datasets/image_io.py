"""Pixel I/O for chest X-ray files: decode anything to 8-bit grayscale.

Conventions (every loader in this package goes through these functions):

* Images are returned as ``np.uint8`` arrays of shape ``(H, W)``, 0 = black.
  Radiographs follow the usual display convention: air / lungs dark, bone bright.
* Colour (RGB, CMYK, YCbCr, palette ``P``) is converted with Pillow's ITU-R
  601-2 luma transform, ``L = R*299/1000 + G*587/1000 + B*114/1000`` (so R=G=B
  images keep their values exactly; pure red -> 76, green -> 150, blue -> 29).
* Alpha (RGBA, LA, PA, palette with transparency) is COMPOSITED ON BLACK:
  ``gray = round(L * A / 255)``. For the usual fully opaque files this is the
  same as ignoring alpha; transparent padding becomes black, like the air
  around a patient.
* High bit depth integer images (``I;16*``, ``I``) are scaled by their actual
  bit depth, never clipped: the depth is the smallest of 8, 10, 12, 14, 16 bits
  that holds the image's maximum value (PNG stores 10/12-bit X-rays in a 16-bit
  container), and ``out = round(v * 255 / (2**bits - 1))``. A 16-bit file whose
  values are all <= 255 is taken as 8-bit data. Images with negative values or
  values >= 2**16 are min-max normalised to 0..255.
* Float images (``F``): values in [0, 1] are multiplied by 255, values in
  [0, 255] are rounded, anything else is min-max normalised; NaN/inf is an
  error.
* Multi-frame files (GIF, TIFF) use their first frame. EXIF orientation is NOT
  applied (medical exports rarely carry it and masks would not follow it).
* JSRT raw ``.IMG`` files (no header, 2048x2048, big-endian 12-bit in uint16)
  are read by :func:`load_jsrt_img`, which INVERTS them; see its docstring.

Every decoding problem raises :class:`DataError`, whose message starts with the
offending file's path.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

__all__ = [
    'DataError',
    'IGNORABLE_NAMES',
    'IMAGE_EXTENSIONS',
    'is_ignorable',
    'is_image_file',
    'load_grayscale',
    'load_jsrt_img',
    'load_mask',
    'resize_image',
    'resize_mask',
    'to_hw',
    'JSRT_SHAPE',
]

# Shape of the JSRT database's raw images.
JSRT_SHAPE = (2048, 2048)

# File extensions (lower case) treated as images by the folder readers. A file
# with one of these extensions that does not decode is an error, not a skip.
IMAGE_EXTENSIONS = frozenset({
    '.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp',
    '.pgm', '.ppm', '.pbm', '.img',
})

# OS / file-manager droppings that are skipped (and counted), never errors.
IGNORABLE_NAMES = frozenset({'.ds_store', 'thumbs.db', 'desktop.ini', 'ehthumbs.db', '__macosx'})


class DataError(ValueError):
  """A problem with the user's data. The message always names the path first.

  Attributes:
    path: the file or folder at fault.
    problem: what is wrong with it.
  """

  def __init__(self, path: os.PathLike | str, problem: str):
    self.path = Path(path)
    self.problem = problem
    super().__init__(f'{path}: {problem}')

  def __reduce__(self):  # keep picklable (process pools)
    return (type(self), (self.path, self.problem))


def is_ignorable(path: os.PathLike | str) -> bool:
  """True for system/hidden files that folder readers skip silently (but count).

  ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, macOS ``._*`` resource forks,
  anything inside ``__MACOSX``, and every hidden file or folder (name starting
  with ``.``).
  """
  p = Path(path)
  name = p.name
  if not name:
    return False
  if name.lower() in IGNORABLE_NAMES or name.startswith('.'):
    return True
  return any(part.lower() == '__macosx' for part in p.parts)


def is_image_file(path: os.PathLike | str) -> bool:
  """True if the extension is one of :data:`IMAGE_EXTENSIONS` (content unchecked)."""
  return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def to_hw(size: int | Sequence[int]) -> tuple[int, int]:
  """``128 -> (128, 128)``; ``(h, w) -> (h, w)``."""
  if isinstance(size, (int, np.integer)):
    h = w = int(size)
  else:
    h, w = (int(s) for s in size)
  if h <= 0 or w <= 0:
    raise ValueError(f'size must be positive, got {size!r}')
  return h, w


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------

_BIT_DEPTHS = (8, 10, 12, 14, 16)


def _scale_int(arr: np.ndarray) -> np.ndarray:
  """High-bit-depth integers -> uint8 by the bit depth implied by the max."""
  arr = arr.astype(np.int64, copy=False)
  if arr.size == 0:
    return arr.astype(np.uint8)
  lo, hi = int(arr.min()), int(arr.max())
  if lo < 0 or hi >= 2**16:
    return _minmax(arr.astype(np.float64))
  bits = next(b for b in _BIT_DEPTHS if hi < 2**b)
  if bits == 8:
    return arr.astype(np.uint8)
  maxval = 2**bits - 1
  # Exact integer rounding: floor((v*255*2 + maxval) / (2*maxval)).
  return ((arr * 510 + maxval) // (2 * maxval)).astype(np.uint8)


def _minmax(arr: np.ndarray) -> np.ndarray:
  lo, hi = float(arr.min()), float(arr.max())
  if hi <= lo:
    return np.zeros(arr.shape, np.uint8)
  return np.rint((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _scale_float(arr: np.ndarray) -> np.ndarray:
  arr = arr.astype(np.float64, copy=False)
  if arr.size == 0:
    return arr.astype(np.uint8)
  lo, hi = float(arr.min()), float(arr.max())
  if lo >= 0.0 and hi <= 1.0:
    return np.rint(arr * 255.0).astype(np.uint8)
  if lo >= 0.0 and hi <= 255.0:
    return np.rint(arr).astype(np.uint8)
  return _minmax(arr)


def _composite_on_black(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  g = gray.astype(np.uint32)
  a = alpha.astype(np.uint32)
  return ((g * a + 127) // 255).astype(np.uint8)


def _pil_to_gray(img: Image.Image) -> np.ndarray:
  """Pillow image (already loaded) -> uint8 (H, W), per the module conventions."""
  mode = img.mode
  if mode == 'L':
    return np.asarray(img, dtype=np.uint8)
  if mode == '1':
    return np.asarray(img.convert('L'), dtype=np.uint8)
  if mode.startswith('I;16') or mode == 'I':
    return _scale_int(np.asarray(img))
  if mode == 'F':
    arr = np.asarray(img, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
      raise ValueError('float image contains NaN or inf')
    return _scale_float(arr)
  if mode == 'P':
    img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
    mode = img.mode
  if mode in ('PA',):
    img = img.convert('RGBA')
    mode = 'RGBA'
  if mode in ('LA', 'La'):
    if mode == 'La':
      img = img.convert('LA')
    gray = np.asarray(img.getchannel('L'), dtype=np.uint8)
    return _composite_on_black(gray, np.asarray(img.getchannel('A')))
  if mode in ('RGBA', 'RGBa'):
    if mode == 'RGBa':
      img = img.convert('RGBA')
    gray = np.asarray(img.convert('RGB').convert('L'), dtype=np.uint8)
    return _composite_on_black(gray, np.asarray(img.getchannel('A')))
  if mode != 'RGB':
    img = img.convert('RGB')  # CMYK, YCbCr, LAB, HSV, RGBX, ...
  return np.asarray(img.convert('L'), dtype=np.uint8)


def load_grayscale(path: os.PathLike | str) -> np.ndarray:
  """Decodes any supported image file to ``uint8 (H, W)`` grayscale.

  Files with the ``.IMG`` extension are read as JSRT raw images
  (:func:`load_jsrt_img`, 2048x2048). Everything else goes through Pillow.

  Raises:
    DataError: missing, zero-byte, truncated, corrupt or non-image file (the
      message names the file and the problem).
  """
  path = Path(path)
  if path.suffix.lower() == '.img':
    return load_jsrt_img(path)
  _check_nonempty(path)
  try:
    with Image.open(path) as img:
      img.load()  # forces full decoding: truncation errors surface here
      return _pil_to_gray(img)
  except DataError:
    raise
  except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ...)
    raise DataError(path, f'cannot decode image ({type(e).__name__}: {e})') from e


def _check_nonempty(path: Path) -> None:
  try:
    size = path.stat().st_size
  except FileNotFoundError:
    raise DataError(path, 'file does not exist') from None
  except OSError as e:
    raise DataError(path, f'cannot read file ({e})') from e
  if not path.is_file():
    raise DataError(path, 'not a regular file')
  if size == 0:
    raise DataError(path, 'zero-byte file')


def load_jsrt_img(
    path: os.PathLike | str,
    shape: tuple[int, int] | int | None = JSRT_SHAPE,
) -> np.ndarray:
  """Reads a JSRT raw ``.IMG`` file to ``uint8 (H, W)``, lungs dark.

  The JSRT files have no header: ``H*W`` big-endian uint16 values holding 12-bit
  data (0..4095). In JSRT a LARGER value is DARKER (the values follow film
  optical density: the radiolucent lungs expose the film most). Evidence: the
  ImageJ import used with this database needs the "white is zero" option, and
  the widely used preprocessing is ``1 - raw / 4096``. We therefore invert:
  ``gray = round((4095 - v) * 255 / 4095)``, giving the same polarity as every
  other X-ray here (lungs dark, bone and mediastinum bright). Should a file
  hold values above 4095 it is treated as 16-bit data (``65535 - v``).

  Args:
    path: the ``.IMG`` file.
    shape: ``(H, W)`` or a side length; 2048x2048 for the real database (the
      default). ``None`` infers a square shape from the file size.

  Raises:
    DataError: unreadable file or a size that does not match ``shape``.
  """
  path = Path(path)
  _check_nonempty(path)
  try:
    raw = np.fromfile(path, dtype='>u2')
  except Exception as e:  # pragma: no cover - OS-level failures
    raise DataError(path, f'cannot read JSRT raw file ({e})') from e
  nbytes = path.stat().st_size
  if shape is None:
    side = math.isqrt(raw.size)
    if nbytes % 2 or side * side != raw.size:
      raise DataError(path, f'{nbytes} bytes is not a square 16-bit raw image')
    h = w = side
  else:
    h, w = to_hw(shape)
  if nbytes != 2 * h * w:
    raise DataError(
        path,
        f'JSRT raw image must be {2 * h * w} bytes ({h}x{w} big-endian uint16),'
        f' found {nbytes} bytes (truncated or not a JSRT .IMG file)')
  raw = raw.reshape(h, w).astype(np.int64)
  maxval = 4095 if int(raw.max()) <= 4095 else 65535
  inv = maxval - raw
  return ((inv * 510 + maxval) // (2 * maxval)).astype(np.uint8)


def load_mask(path: os.PathLike | str) -> np.ndarray:
  """Loads a mask file to ``uint8`` {0, 1}, shape ``(H, W)``.

  Decoded like :func:`load_grayscale` (so 16-bit, palette GIF, RGB masks all
  work) except for alpha: a mask is never composited. If the file has an alpha
  channel whose colours are all the same while alpha varies (a mask drawn as
  transparency), alpha IS the mask; otherwise alpha is ignored (so a GIF whose
  transparent palette entry is the foreground colour still works). Then
  binarised: if the values are already within {0, 1}, any value > 0 is
  foreground; otherwise (0/255 masks, possibly anti-aliased) ``> 127``.
  """
  path = Path(path)
  if path.suffix.lower() == '.img':
    gray = load_jsrt_img(path)
  else:
    _check_nonempty(path)
    try:
      with Image.open(path) as img:
        img.load()
        gray = _mask_gray(img)
    except Exception as e:
      raise DataError(path, f'cannot decode mask image ({type(e).__name__}: {e})') from e
  if gray.size and int(gray.max()) <= 1:
    return (gray > 0).astype(np.uint8)
  return (gray > 127).astype(np.uint8)


def _mask_gray(img: Image.Image) -> np.ndarray:
  if img.mode == 'P':
    img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
  elif img.mode == 'La':
    img = img.convert('LA')
  elif img.mode in ('PA', 'RGBa'):
    img = img.convert('RGBA')
  if img.mode in ('RGBA', 'LA'):
    alpha = np.asarray(img.getchannel('A'))
    colour = np.asarray(img.convert('RGB').convert('L'))
    if colour.min() == colour.max() and alpha.min() != alpha.max():
      return alpha.astype(np.uint8)
    return colour.astype(np.uint8)
  return _pil_to_gray(img)


# --------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------


def resize_image(img: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
  """Resizes a ``uint8 (H, W)`` image to ``size`` (int, or ``(h, w)``).

  Pillow ``BILINEAR``, which widens its kernel when shrinking (antialiased, an
  area-like filter); aspect ratio is NOT kept (squashed, as in the paper).
  """
  h, w = to_hw(size)
  img = np.asarray(img)
  if img.dtype != np.uint8 or img.ndim != 2:
    raise ValueError(f'expected a uint8 (H, W) image, got {img.dtype} {img.shape}')
  if img.shape == (h, w):
    return img.copy()
  out = Image.fromarray(np.ascontiguousarray(img)).resize((w, h), Image.Resampling.BILINEAR)
  return np.asarray(out, dtype=np.uint8)


def resize_mask(mask: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
  """Resizes a binary mask: bilinear (antialiased) on floats, then ``>= 0.5``.

  Returns ``uint8`` {0, 1} of shape ``size``.
  """
  h, w = to_hw(size)
  mask = np.asarray(mask)
  if mask.ndim != 2:
    raise ValueError(f'expected an (H, W) mask, got shape {mask.shape}')
  binary = (mask > 0)
  if binary.shape == (h, w):
    return binary.astype(np.uint8)
  f = Image.fromarray(binary.astype(np.float32))
  out = np.asarray(f.resize((w, h), Image.Resampling.BILINEAR))
  return (out >= 0.5).astype(np.uint8)
