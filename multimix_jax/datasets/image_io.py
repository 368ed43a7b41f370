"""Pixel I/O: any chest X-ray file to ``uint8 (H, W)`` grayscale, masks to {0, 1}.

Conventions (docs/multimix.md, Data): colour and palette images use Pillow's ITU-R 601-2
luma (``convert('L')``, R=G=B keeps its value); alpha is composited on black
(``round(L * A / 255)``, transparent padding becomes air); integer images wider than 8 bits
are scaled by their bit depth, the smallest of 8, 10, 12, 14, 16 bits holding the maximum
(``round(v * 255 / (2**bits - 1))``), never clipped; float images in [0, 1] are multiplied by
255, in [0, 255] rounded, anything else is min-max normalised; JSRT raw ``.IMG`` files are
INVERTED so lungs are dark as everywhere else. Every decoding problem raises
:class:`DataError` naming the file.

DICOM (``.dcm``, ``.dicom``, or any extension-less file with the ``DICM`` preamble), with
pydicom (:func:`load_dicom`): stored values masked to BitsStored, PixelPaddingValue pixels
found, then the Modality LUT (RescaleSlope/Intercept or a Modality LUT Sequence), then the
VOI LUT or window centre/width of the file (its first), else a robust window from the 0.5th
to the 99.5th percentile of the non-padding pixels, to [0, 255]; MONOCHROME1 inverted;
padding pixels black. Multi-frame files, files without pixel data and lateral views
(ViewPosition LL, RL, LATERAL) are not films for this model: folder readers skip and count
them (:func:`dicom_skip_reason`). Compressed transfer syntaxes need pydicom's decoder
plugins: ``pip install 'multimix_jax[dicom]'``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from multimix_jax.errors import DataError

JSRT_SHAPE = (2048, 2048)
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff",
                              ".webp", ".pgm", ".ppm", ".pbm", ".img"})
IGNORABLE_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL"})
DICOM_DECODERS = "pip install 'multimix_jax[dicom]' (pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg)"


def is_ignorable(path: os.PathLike | str) -> bool:
    """System droppings skipped (and counted): hidden files, Thumbs.db, __MACOSX, ..."""
    p = Path(path)
    return (p.name.startswith(".") or p.name.lower() in IGNORABLE_NAMES
            or any(part.lower() == "__macosx" for part in p.parts))


def is_dicom_file(path: os.PathLike | str) -> bool:
    """A ``.dcm`` / ``.dicom`` file, or an extension-less file starting with the DICOM
    preamble (128 bytes, then ``DICM``)."""
    p = Path(path)
    if p.suffix.lower() in DICOM_EXTENSIONS:
        return True
    if p.suffix or not p.is_file():
        return False
    try:
        with open(p, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_image_file(path: os.PathLike | str) -> bool:
    """True if the extension is an image extension or the file is DICOM (content unchecked)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS or is_dicom_file(path)


def dicom_skip_reason(path: os.PathLike | str) -> str | None:
    """Why a DICOM file is not a frontal film to read ('dicom_no_pixel_data',
    'dicom_multi_frame', 'dicom_lateral_view'), from its header; None for anything else (an
    unreadable header is left to :func:`load_dicom`, which names the file)."""
    if not is_dicom_file(path):
        return None
    try:
        ds = pydicom.dcmread(path, defer_size=1024)  # pixels are not read
    except Exception:
        return None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return "dicom_no_pixel_data"
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return "dicom_multi_frame"
    if str(ds.get("ViewPosition", "")).strip().upper() in LATERAL_VIEWS:
        return "dicom_lateral_view"
    return None


def _dicom_pixels(path: Path, ds) -> np.ndarray:
    """The stored pixel values of a single-frame DICOM (masked to BitsStored)."""
    try:
        arr = ds.pixel_array
    except Exception as e:  # no decoder, truncated or malformed pixel data
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if ts is not None and ts.is_compressed and "decod" in str(e).lower():
            raise DataError(path, f"is compressed ({ts.name}) and pydicom has no decoder for it: "
                            f"{DICOM_DECODERS}") from None
        raise DataError(path, f"cannot decode the DICOM pixels ({type(e).__name__}: {e})") from None
    if arr.ndim != 2 and not (arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 3):
        raise DataError(path, f"DICOM pixels of shape {arr.shape}: not one 2-D frame")
    bits = int(ds.get("BitsStored", 0) or 0)
    if arr.dtype.kind == "u" and 0 < bits < arr.dtype.itemsize * 8:
        arr = arr & np.asarray((1 << bits) - 1, arr.dtype)
    return arr


def _window_bounds(ds, x: np.ndarray) -> tuple[float, float] | None:
    """The VOI output of the darkest and brightest possible input (the range the file's
    VOI LUT or window maps onto), or None when the file has neither."""
    if "VOILUTSequence" not in ds and "WindowCenter" not in ds:
        return None
    ends = apply_voi_lut(np.array([x.min() - 1e9, x.max() + 1e9], np.float64), ds, index=0)
    return float(ends[0]), float(ends[1])


def load_dicom(path: os.PathLike | str) -> np.ndarray:
    """A single-frame DICOM film -> ``uint8 (H, W)`` by the rules in the module docstring."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as e:
        raise DataError(path, f"cannot read the DICOM ({type(e).__name__}: {e})") from None
    reason = dicom_skip_reason(path)
    if reason is not None:
        raise DataError(path, f"is not a frontal film ({reason.removeprefix('dicom_').replace('_', ' ')})")
    stored = _dicom_pixels(path, ds)
    if stored.ndim == 3:  # colour (RGB after pydicom's YBR conversion): ITU-R 601-2 luma
        return np.rint(stored[..., :3].astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    padding = np.zeros(stored.shape, bool)
    if "PixelPaddingValue" in ds:
        lo = int(ds.PixelPaddingValue)
        hi = int(ds.get("PixelPaddingRangeLimit", lo))
        padding = (stored >= min(lo, hi)) & (stored <= max(lo, hi))
    x = np.asarray(apply_modality_lut(stored, ds), np.float64)
    bounds = _window_bounds(ds, x)
    if bounds is not None:
        y = np.asarray(apply_voi_lut(x, ds, index=0), np.float64)
        lo, hi = bounds
    else:
        y = x
        film = x[~padding] if (~padding).any() else x
        lo, hi = (float(v) for v in np.percentile(film, [0.5, 99.5]))
    y = np.clip((y - lo) / (hi - lo), 0.0, 1.0) if hi != lo else np.zeros_like(y)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        y = 1.0 - y
    y[padding] = 0.0
    return np.rint(y * 255.0).astype(np.uint8)


def _scale(arr: np.ndarray) -> np.ndarray:
    """High-bit-depth or float pixels -> uint8 by the rules in the module docstring."""
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError("float image contains NaN or inf")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if arr.dtype.kind == "f" and lo >= 0 and hi <= 1:
        return np.rint(arr * 255.0).astype(np.uint8)
    if arr.dtype.kind == "f" and lo >= 0 and hi <= 255:
        return np.rint(arr).astype(np.uint8)
    if arr.dtype.kind in "iu" and lo >= 0 and hi < 2**16:
        bits = next(b for b in (8, 10, 12, 14, 16) if hi < 2**b)
        top = 2**bits - 1
        return ((arr.astype(np.int64) * 510 + top) // (2 * top)).astype(np.uint8)
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.rint((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _gray_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(luma or scaled high-bit-depth pixels, alpha channel or None)."""
    if img.mode.startswith("I") or img.mode == "F":
        return _scale(np.asarray(img)), None
    if img.mode in ("P", "PA", "RGBa", "La"):
        img = img.convert("RGBA")  # palette transparency becomes alpha
    alpha = np.asarray(img.getchannel("A")) if "A" in img.getbands() else None
    return np.asarray(img.convert("L"), dtype=np.uint8), alpha


def _decode(path: Path, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(gray, alpha or None) of the fully decoded first frame (truncation surfaces here)."""
    if not path.is_file() or path.stat().st_size == 0:
        problem = "empty (zero-byte)" if path.is_file() else "missing or not a"
        raise DataError(path, f"{problem} {what} file")
    try:
        with Image.open(path) as img:
            img.verify()  # checksums (PNG): corrupted bytes that would decode silently
        with Image.open(path) as img:
            img.load()
            return _gray_alpha(img)
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise DataError(path, f"cannot decode the {what} ({type(e).__name__}: {e})") from None


def load_grayscale(path: os.PathLike | str) -> np.ndarray:
    """Any image file (``.IMG``: JSRT raw; DICOM) -> ``uint8 (H, W)``, alpha composited on
    black."""
    path = Path(path)
    if path.suffix.lower() == ".img":
        return load_jsrt_img(path)
    if is_dicom_file(path):
        return load_dicom(path)
    gray, alpha = _decode(path, "image")
    if alpha is None:
        return gray
    return ((gray.astype(np.uint32) * alpha + 127) // 255).astype(np.uint8)


def load_jsrt_img(path: os.PathLike | str) -> np.ndarray:
    """A JSRT raw ``.IMG`` (2048x2048 big-endian uint16, 12-bit, larger = darker) -> uint8,
    inverted: ``round((4095 - v) * 255 / 4095)`` (65535 if values exceed 12 bits)."""
    path, (h, w) = Path(path), JSRT_SHAPE
    nbytes = path.stat().st_size if path.is_file() else 0
    if nbytes != 2 * h * w:
        raise DataError(path, f"{nbytes} bytes, but a {h}x{w} JSRT raw image (big-endian "
                        f"uint16) is {2 * h * w} bytes: truncated or not a JSRT .IMG file")
    raw = np.fromfile(path, dtype=">u2").reshape(h, w).astype(np.int64)
    top = 4095 if raw.max() <= 4095 else 65535
    return (((top - raw) * 510 + top) // (2 * top)).astype(np.uint8)


def load_mask(path: os.PathLike | str) -> np.ndarray:
    """A mask file -> ``uint8`` {0, 1}. Alpha is the mask when the colour is constant and
    alpha varies (a mask drawn as transparency), else ignored; then ``> 0`` for {0, 1}
    data and ``> 127`` otherwise (0/255, anti-aliased)."""
    gray, alpha = _decode(Path(path), "mask")
    if alpha is not None and gray.min() == gray.max() and alpha.min() != alpha.max():
        gray = alpha
    return (gray > (0 if gray.size and gray.max() <= 1 else 127)).astype(np.uint8)


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
    """Squash-resizes ``uint8 (H, W)`` to ``(size, size)`` with Pillow BILINEAR (antialiased
    when shrinking); the aspect ratio is not kept, as in the paper."""
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError(f"expected a uint8 (H, W) image, got {img.dtype} {img.shape}")
    if img.shape == (size, size):
        return img.copy()
    out = Image.fromarray(np.ascontiguousarray(img)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(out)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resizes a binary mask to ``(size, size)``: bilinear on floats, then ``>= 0.5``; uint8."""
    binary = (np.asarray(mask) > 0).astype(np.float32)
    if binary.shape != (size, size):
        binary = np.asarray(Image.fromarray(binary).resize((size, size), Image.Resampling.BILINEAR))
    return (binary >= 0.5).astype(np.uint8)
