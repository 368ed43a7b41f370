"""Data augmentation for MultiMix (docs/multimix.md, Augmentations).

All functions work on 2-D ``np.uint8`` grayscale arrays (H, W) and return new
``np.uint8`` arrays of the same shape. Every random choice is drawn from an explicit
``np.random.Generator`` argument; no global random state (``random``, ``np.random``) is
ever used, so a Grain ``RandomMap`` seeded per element is exactly reproducible.

- ``weak_augment``: horizontal flip (p=0.5) + reflect-pad 32 px + random crop back to (H, W).
- ``strong_augment``: the same flip + reflect-pad crop (32 px; the original's 4 px is a
  CIFAR leftover: docs/multimix.md, Deviations from the original code) followed by
  ``rand_augment`` (n=2, m=10).
- ``rand_augment``: the FixMatch RandAugment variant ("RandAugmentMC", fixmatch pool)
  used by the original, without Cutout.
- ``joint_geometric_augment``: optional identical geometric augmentation of an image and
  its binary mask for segmentation (off by default in the project; the original does not
  augment segmentation images).

Geometric RandAugment ops (Rotate, ShearX/Y, TranslateX/Y) keep the image size and fill
uncovered pixels with 0 (black), and resample with nearest neighbour; both are Pillow's
defaults, as in the original. ShearX/Y use Pillow's raw affine map, which shears about the
top-left corner (not the centre), again exactly as the original.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps
from scipy import ndimage
from skimage import draw

# Strength scale of the FixMatch RandAugment pool: v in 1..PARAMETER_MAX-1 maps to
# v / PARAMETER_MAX of each op's maximum.
PARAMETER_MAX = 10

_FILL = 0  # fill value for pixels uncovered by geometric ops


# ---------------------------------------------------------------------------
# Input checks and small helpers
# ---------------------------------------------------------------------------


def _check_image(image: np.ndarray, name: str = "image") -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (H, W) grayscale array, got shape {image.shape}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {image.dtype}")
    if image.size == 0:
        raise ValueError(f"{name} must be non-empty, got shape {image.shape}")


def _check_rng(rng: np.random.Generator) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a np.random.Generator (no global random state), "
            f"got {type(rng).__name__}"
        )


def _check_pad(pad: int) -> None:
    if int(pad) != pad or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")


def _check_rand_augment_params(num_ops: int, magnitude: int) -> None:
    if int(num_ops) != num_ops or num_ops < 0:
        raise ValueError(f"num_ops must be a non-negative integer, got {num_ops!r}")
    if int(magnitude) != magnitude or magnitude < 2:
        raise ValueError(f"magnitude must be an integer >= 2, got {magnitude!r}")


def _random_sign(value: float, rng: np.random.Generator) -> float:
    """Negate ``value`` with probability 0.5 (FixMatch: ``if random() < 0.5: v = -v``)."""
    return -value if rng.random() < 0.5 else value


def _float_parameter(v: int, max_v: float) -> float:
    return float(v) * max_v / PARAMETER_MAX


def _int_parameter(v: int, max_v: int) -> int:
    return int(v * max_v / PARAMETER_MAX)


def _flip_pad_crop(
    arrays: list[np.ndarray],
    rng: np.random.Generator,
    pad: int,
    flip_prob: float = 0.5,
) -> list[np.ndarray]:
    """Same horizontal flip (p=flip_prob) and reflect-pad random crop for every array.

    Written with numpy because Pillow has no reflect padding; slicing is also cheaper.
    Crop offsets are uniform in 0..2*pad inclusive, as torchvision's RandomCrop.
    """
    h, w = arrays[0].shape
    flip = rng.random() < flip_prob
    top = int(rng.integers(0, 2 * pad + 1))
    left = int(rng.integers(0, 2 * pad + 1))
    out = []
    for a in arrays:
        if flip:
            a = a[:, ::-1]
        if pad:
            a = np.pad(a, pad, mode="reflect")[top : top + h, left : left + w]
        out.append(np.ascontiguousarray(a))
    return out


# ---------------------------------------------------------------------------
# RandAugment op pool (FixMatch variant; docs/multimix.md, Augmentations)
# Each op: (PIL 'L' image, strength v in 1..9, rng for the sign) -> PIL 'L' image.
# ---------------------------------------------------------------------------

Op = Callable[[Image.Image, int, np.random.Generator], Image.Image]


def _auto_contrast(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    return ImageOps.autocontrast(img)


def _brightness(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Brightness(img).enhance(_float_parameter(v, 0.9) + 0.05)


def _contrast(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Contrast(img).enhance(_float_parameter(v, 0.9) + 0.05)


def _equalize_histogram(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    """Global histogram equalisation (RandAugment's Equalize)."""
    return ImageOps.equalize(img)


def _identity(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    return img


def _posterize(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    return ImageOps.posterize(img, _int_parameter(v, 4) + 4)


def _rotate(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    angle = _random_sign(_int_parameter(v, 30), rng)
    return img.rotate(angle, resample=Image.Resampling.NEAREST, fillcolor=_FILL)


def _sharpness(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Sharpness(img).enhance(_float_parameter(v, 0.9) + 0.05)


def _pillow_raw_affine(img: Image.Image, coeffs: tuple[float, ...]) -> Image.Image:
    """RandAugment's shear and translate: Pillow's raw map (output pixel (x, y) samples input
    (a*x + b*y + c, d*x + e*y + f)), nearest neighbour, black fill."""
    return img.transform(
        img.size,
        Image.Transform.AFFINE,
        coeffs,
        resample=Image.Resampling.NEAREST,
        fillcolor=_FILL,
    )


def _shear_x(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    s = _random_sign(_float_parameter(v, 0.3), rng)
    return _pillow_raw_affine(img, (1, s, 0, 0, 1, 0))


def _shear_y(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    s = _random_sign(_float_parameter(v, 0.3), rng)
    return _pillow_raw_affine(img, (1, 0, 0, s, 1, 0))


def _solarize(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    # Pillow inverts every pixel >= threshold.
    return ImageOps.solarize(img, 256 - _int_parameter(v, 256))


def _translate_x(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    # Positive shift samples from the right, i.e. moves content left by `shift` px.
    shift = int(_random_sign(_float_parameter(v, 0.3), rng) * img.size[0])
    return _pillow_raw_affine(img, (1, 0, shift, 0, 1, 0))


def _translate_y(img: Image.Image, v: int, rng: np.random.Generator) -> Image.Image:
    shift = int(_random_sign(_float_parameter(v, 0.3), rng) * img.size[1])
    return _pillow_raw_affine(img, (1, 0, 0, 0, 1, shift))


RAND_AUGMENT_OPS: dict[str, Op] = {
    "AutoContrast": _auto_contrast,
    "Brightness": _brightness,
    "Contrast": _contrast,
    "Equalize": _equalize_histogram,
    "Identity": _identity,
    "Posterize": _posterize,
    "Rotate": _rotate,
    "Sharpness": _sharpness,
    "ShearX": _shear_x,
    "ShearY": _shear_y,
    "Solarize": _solarize,
    "TranslateX": _translate_x,
    "TranslateY": _translate_y,
}


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def rand_augment(
    image: np.ndarray,
    rng: np.random.Generator,
    num_ops: int = 2,
    magnitude: int = 10,
) -> np.ndarray:
    """RandAugment, FixMatch variant without Cutout (docs/multimix.md, Augmentations).

    Picks ``num_ops`` ops with replacement from ``RAND_AUGMENT_OPS``; for each draws a
    strength v uniformly from 1..magnitude-1 and applies the op with probability 0.5.
    """
    _check_image(image)
    _check_rng(rng)
    _check_rand_augment_params(num_ops, magnitude)
    ops = tuple(RAND_AUGMENT_OPS.values())  # looked up per call so tests can patch it
    img: Image.Image | None = None
    for idx in rng.integers(0, len(ops), size=int(num_ops)):
        v = int(rng.integers(1, magnitude))
        if rng.random() < 0.5:
            if img is None:
                img = Image.fromarray(image)
            img = ops[idx](img, v, rng)
    if img is None:
        return image.copy()
    return np.array(img, dtype=np.uint8)


def weak_augment(
    image: np.ndarray, rng: np.random.Generator, pad: int = 32
) -> np.ndarray:
    """Horizontal flip (p=0.5), reflect-pad by ``pad`` px, random crop back to (H, W).

    (docs/multimix.md, Augmentations)
    """
    _check_image(image)
    _check_rng(rng)
    _check_pad(pad)
    return _flip_pad_crop([image], rng, pad)[0]


def strong_augment(
    image: np.ndarray,
    rng: np.random.Generator,
    pad: int = 32,
    num_ops: int = 2,
    magnitude: int = 10,
) -> np.ndarray:
    """Flip + reflect-pad crop (32 px, not the original's 4), then ``rand_augment``.

    (docs/multimix.md, Augmentations)
    """
    _check_image(image)
    _check_rng(rng)
    _check_pad(pad)
    _check_rand_augment_params(num_ops, magnitude)
    cropped = _flip_pad_crop([image], rng, pad)[0]
    return rand_augment(cropped, rng, num_ops=num_ops, magnitude=magnitude)


def joint_geometric_augment(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    pad: int = 32,
    max_rotate: float = 10.0,
    flip_prob: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Identical geometric augmentation of an image and its binary mask (segmentation).

    Horizontal flip (p=``flip_prob``), reflect-pad by ``pad`` px + random crop back to
    (H, W), then a rotation by an angle uniform in [-max_rotate, max_rotate] degrees about
    the centre (image: bilinear, mask: nearest so it stays {0, 1}; uncovered pixels are 0
    in both). Optional: the original does not augment segmentation images
    (docs/multimix.md, Augmentations); the caller decides whether to use it.
    """
    _check_image(image, "image")
    _check_image(mask, "mask")
    _check_rng(rng)
    _check_pad(pad)
    if mask.shape != image.shape:
        raise ValueError(
            f"mask shape {mask.shape} must equal image shape {image.shape}"
        )
    if mask.max() > 1:
        raise ValueError("mask must be binary with values in {0, 1}")
    if not 0.0 <= flip_prob <= 1.0:
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob!r}")
    if max_rotate < 0:
        raise ValueError(f"max_rotate must be >= 0, got {max_rotate!r}")

    img_out, mask_out = _flip_pad_crop([image, mask], rng, pad, flip_prob)

    angle = float(rng.uniform(-max_rotate, max_rotate)) if max_rotate > 0 else 0.0
    if angle != 0.0:
        img_out = np.array(
            Image.fromarray(img_out).rotate(
                angle, resample=Image.Resampling.BILINEAR, fillcolor=_FILL
            ),
            dtype=np.uint8,
        )
        mask_out = np.array(
            Image.fromarray(mask_out).rotate(
                angle, resample=Image.Resampling.NEAREST, fillcolor=0
            ),
            dtype=np.uint8,
        )
    return img_out, mask_out


# ---------------------------------------------------------------------------
# Acquisition and disease augmentation (docs/multimix.md, Recipe for unseen films):
# the films of other hospitals differ in exposure curve, sharpness, noise, framing and
# aspect ratio, and diseased lungs are opaque where a normal lung is dark.
# ---------------------------------------------------------------------------


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def rotate_zoom_shift(image: np.ndarray, mask: np.ndarray | None, angle_deg: float, zoom: float,
                      aspect: float, shift: tuple[float, float] = (0.0, 0.0)):
    """Rotate by ``angle_deg``, scale by ``zoom`` (x sqrt(aspect) across, / sqrt(aspect) down)
    about the centre and shift by ``shift`` (rows, cols) pixels, image and mask alike: image
    bilinear, mask nearest, both filled by edge replication (a zoom-out extends the mask
    exactly where it extends the film). Returns (image, mask or None). scipy.ndimage serves."""
    a = np.deg2rad(angle_deg)
    scale = np.array([zoom / np.sqrt(aspect), zoom * np.sqrt(aspect)])  # (rows, cols)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    matrix = np.linalg.inv(rotation @ np.diag(scale))  # output -> input coordinates
    centre = (np.array(image.shape) - 1) / 2.0
    offset = centre - matrix @ (centre + np.asarray(shift))
    warp = lambda x, order, mode: ndimage.affine_transform(
        x, matrix, offset=offset, order=order, mode=mode)
    out = to_uint8(warp(image.astype(np.float32), 1, "nearest"))
    return out, (warp(mask, 0, "nearest") if mask is not None else None)


def geometric_jitter(image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator,
                     max_rotate: float = 10.0, max_zoom: float = 0.1, max_aspect: float = 0.15):
    """Random rotation, isotropic zoom and aspect-ratio change (the Kermany films were resized
    to a square without keeping their aspect ratio, differently per class)."""
    log_aspect = np.log1p(max_aspect)
    return rotate_zoom_shift(image, mask, rng.uniform(-max_rotate, max_rotate),
                             rng.uniform(1 - max_zoom, 1 + max_zoom),
                             float(np.exp(rng.uniform(-log_aspect, log_aspect))))


def photometric_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure-curve jitter (gamma 0.7-1.4, contrast 0.75-1.25, brightness +-8%) and, each
    with p=0.25, a Gaussian blur (sigma up to 1 px at 64 px) and Gaussian noise (std up to 8)."""
    x = (image.astype(np.float32) / 255.0) ** np.exp(rng.uniform(-0.35, 0.35))
    x = (0.5 + (x - 0.5) * rng.uniform(0.75, 1.25) + rng.uniform(-0.08, 0.08)) * 255.0
    if rng.random() < 0.25:
        x = ndimage.gaussian_filter(x, rng.uniform(0.3, 1.0) * image.shape[0] / 64)
    if rng.random() < 0.25:
        x = x + rng.normal(0.0, rng.uniform(2.0, 8.0), image.shape)
    return to_uint8(x)


def paint_opacity(image: np.ndarray, alpha: np.ndarray, density: float) -> np.ndarray:
    """Blend ``image`` towards the soft-tissue gray ``density`` with weight ``alpha`` in [0, 1]
    where it is darker: an opacity replaces dark, air-filled lung by tissue-bright shadow."""
    x = image.astype(np.float32)
    return to_uint8(x + alpha * np.maximum(density - x, 0.0))


def random_opacity(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth random-noise opacities inside the lung ``mask`` (the mask stays true): a
    low-frequency Gaussian field thresholded at a random level, softened and scaled."""
    if not mask.any():
        return image
    field = ndimage.gaussian_filter(rng.normal(size=image.shape), image.shape[0] * rng.uniform(0.04, 0.1))
    field = (field - field.mean()) / (field.std() + 1e-6) - rng.uniform(0.0, 1.5)
    alpha = np.clip(field, 0, 1) * rng.uniform(0.5, 0.95) * (mask > 0)
    density = np.percentile(image, rng.uniform(80, 95))
    return paint_opacity(image, ndimage.gaussian_filter(alpha, 1.0), density)


def occluding_opacity(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dense opacity that hides the lung border, and bright overlays (the mask stays true).

    A low-frequency Gaussian field, thresholded to cover 10-70% of the lungs grown by 2-8% of
    the film (so the lung edge under it vanishes), painted at 90-100% of a bright tissue grey;
    with p=0.5, 1-3 bright curves across the film and 0-3 bright discs. Random shapes, unlike
    the painters of the severe-disease validation set (``shifts.severe_disease_shift``).
    """
    if not mask.any():
        return image
    n = image.shape[0]
    grown = ndimage.binary_dilation(mask > 0, iterations=max(1, int(round(rng.uniform(0.02, 0.08) * n))))
    field = ndimage.gaussian_filter(rng.normal(size=image.shape), n * rng.uniform(0.05, 0.12))
    field = (field - field[grown].mean()) / (field[grown].std() + 1e-6) + rng.uniform(-1.3, 0.5)
    alpha = np.clip(2.0 * field, 0, 1) * rng.uniform(0.9, 1.0) * grown
    density = np.percentile(image, rng.uniform(90, 99))
    out = paint_opacity(image, ndimage.gaussian_filter(alpha, 0.015 * n), density)
    if rng.random() < 0.5:
        out = _bright_overlays(out, rng)
    return out


def typical_lungs(size: int) -> np.ndarray:
    """Two ellipses where the lungs of a centred PA film lie (centres at 47% of the height and
    30% / 70% of the width, semi-axes 28% and 15%): where to paint on films without a mask."""
    rows, cols = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    ellipse = lambda col: ((rows - 0.47) / 0.28) ** 2 + ((cols - col) / 0.15) ** 2 <= 1.0
    return (ellipse(0.30) | ellipse(0.70)).astype(np.uint8)


def unlabeled_occlusion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``occluding_opacity`` on a film without a mask, over :func:`typical_lungs`: the view
    whose prediction the occlusion-consistency term pulls towards the clean view's mask."""
    return occluding_opacity(image, typical_lungs(image.shape[0]), rng)


def _bright_overlays(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1-3 bright quadratic curves between random points on the film and 0-3 bright discs."""
    n, paint = image.shape[0], np.zeros(image.shape, bool)
    for _ in range(rng.integers(1, 4)):
        (r0, c0), (r1, c1), (r2, c2) = (rng.uniform(0, n - 1, 2).astype(int) for _ in range(3))
        rr, cc = draw.bezier_curve(r0, c0, r1, c1, r2, c2, 1.0, shape=image.shape)
        paint[rr, cc] = True
    width = int(rng.integers(0, max(1, round(0.015 * n)) + 1))
    if width:  # scipy dilates until nothing changes at iterations=0
        paint = ndimage.binary_dilation(paint, iterations=width)
    for _ in range(rng.integers(0, 4)):
        rr, cc = draw.disk(tuple(rng.uniform(0, n - 1, 2)), max(1.5, rng.uniform(0.01, 0.03) * n),
                           shape=image.shape)
        paint[rr, cc] = True
    out = image.copy()
    out[paint] = int(rng.uniform(200, 256))
    return out
