"""Shifted validation: the held-out validation films under the shifts that real unseen films
bring (docs/multimix.md, Shifted validation).

In-distribution validation films come from the same hospital, scanner and class prior as the
training films, so they say little about other hospitals' films. These sets are built from the
same held-out films (never trained on), deterministically per (seed, index):

* ``val_cls_shifted``: classification films under one photometric acquisition shift (gamma,
  window, another scanner's characteristic curve, adaptive equalisation, blur, noise, lower
  resolution) and one geometric one (rotation, zoom/crop, aspect ratio), resampled to a 50/50
  class prior (the training pool is ~74% pneumonia): read its balanced accuracy and F1-N.
* ``val_seg_shifted``: segmentation films under the same shifts (geometry applied to the mask
  too).
* ``val_seg_disease``: segmentation films with simulated disease painted inside the lungs -
  a lobar consolidation, a pleural effusion, or bilateral patchy/ground-glass opacities - while
  the true lung mask stays the same (a radiologist's lung mask includes opacified lung).

The training augmentations (``augment.py``) are drawn independently and with other generators
(smooth-noise opacities, milder photometric jitter), but the families overlap: a recipe that
trains on these shifts is favoured on this proxy, which is said wherever it is reported.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
from scipy import ndimage
from skimage import exposure

from multimix_jax.augment import paint_opacity, rotate_zoom_shift, to_uint8
from multimix_jax.names import (CLASSIFICATION, SEGMENTATION, VAL_CLS, VAL_CLS_SHIFTED, VAL_SEG,
                                VAL_SEG_DISEASE, VAL_SEG_SHIFTED)


# --------------------------------------------------------------------------- photometric
def _lut(image: np.ndarray, curve: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply an intensity curve on [0, 1] through a 256-entry look-up table."""
    x = np.linspace(0.0, 1.0, 256)
    table = np.clip(np.round(curve(x) * 255.0), 0, 255).astype(np.uint8)
    return table[image]


def _gamma(image, rng):
    g = rng.choice([rng.uniform(0.5, 0.75), rng.uniform(1.4, 2.0)])
    return _lut(image, lambda x: x ** g)


def _window(image, rng):
    lo, hi = np.percentile(image, [rng.uniform(0, 20), rng.uniform(80, 100)])
    if rng.random() < 0.5:  # a narrow window (clipped) or a flat, low-contrast one
        return _lut(image, lambda x: np.clip((x * 255 - lo) / max(hi - lo, 1), 0, 1))
    c, b = rng.uniform(0.45, 0.7), rng.uniform(-0.1, 0.15)
    return _lut(image, lambda x: 0.5 + (x - 0.5) * c + b)


def _scanner_curve(image, rng):
    """Another scanner's characteristic (sigmoid) curve, normalised to [0, 1]."""
    k, m = rng.uniform(5, 10), rng.uniform(0.35, 0.65)
    s = lambda x: 1 / (1 + np.exp(-k * (x - m)))
    return _lut(image, lambda x: (s(x) - s(0)) / (s(1) - s(0)))


def _adaptive_equalize(image, rng):
    """Adaptive histogram equalisation, as some vendors' post-processing does."""
    out = exposure.equalize_adapthist(image, clip_limit=rng.uniform(0.01, 0.03))
    return to_uint8(out * 255)


def _blur(image, rng):
    sigma = rng.uniform(0.6, 1.4) * image.shape[0] / 64
    return to_uint8(ndimage.gaussian_filter(image.astype(np.float32), sigma))


def _noise(image, rng):
    return to_uint8(image.astype(np.float32) + rng.normal(0, rng.uniform(8, 16), image.shape))


def _low_resolution(image, rng):
    factor = rng.uniform(2.0, 3.5)
    small = ndimage.zoom(image.astype(np.float32), 1 / factor, order=1)
    back = ndimage.zoom(small, np.array(image.shape) / np.array(small.shape), order=1)
    return to_uint8(back)


PHOTOMETRIC = {"gamma": _gamma, "window": _window, "scanner_curve": _scanner_curve,
               "equalize": _adaptive_equalize, "blur": _blur, "noise": _noise,
               "low_resolution": _low_resolution}


# --------------------------------------------------------------------------- geometric
def geometric_shift(image, mask, rng):
    """Rotation up to 12 degrees, zoom 0.85-1.15, aspect ratio 0.8-1.25, shift up to 6%."""
    n = image.shape[0]
    return rotate_zoom_shift(image, mask, rng.uniform(-12, 12), rng.uniform(0.85, 1.15),
                             np.exp(rng.uniform(np.log(0.8), np.log(1.25))),
                             tuple(rng.uniform(-0.06, 0.06, 2) * n))


def acquisition_shift(image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator):
    """One photometric and one geometric shift: (image, mask or None, photometric name)."""
    name = list(PHOTOMETRIC)[rng.integers(len(PHOTOMETRIC))]
    image, mask = geometric_shift(image, mask, rng)
    return PHOTOMETRIC[name](image, rng), mask, name


# --------------------------------------------------------------------------- disease
def _smooth_blob(shape, rng, centre, radius):
    """A soft, irregular blob (0..1) of about ``radius`` pixels around ``centre``."""
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(np.float32)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), radius / 2.5)
    noise /= noise.std() + 1e-6
    d = np.hypot(yy - centre[0], xx - centre[1]) / radius + 0.25 * noise
    return np.clip(1.5 - d, 0, 1)


def _lungs(mask):
    """The two lung components (left/right halves when the mask is one piece)."""
    labels, count = ndimage.label(mask)
    if count >= 2:
        sizes = ndimage.sum(mask, labels, range(1, count + 1))
        return [labels == i + 1 for i in np.argsort(sizes)[::-1][:2]]
    half = mask.shape[1] // 2
    left, right = mask.copy(), mask.copy()
    left[:, half:], right[:, :half] = 0, 0
    return [m.astype(bool) for m in (left, right) if m.any()]


def _consolidation(mask, rng):
    lungs = _lungs(mask)
    lung = lungs[rng.integers(len(lungs))]
    rows, cols = np.nonzero(lung)
    i = rng.integers(len(rows))
    height = rows.max() - rows.min() + 1
    return _smooth_blob(mask.shape, rng, (rows[i], cols[i]), rng.uniform(0.2, 0.4) * height) * lung


def _effusion(mask, rng):
    """Fluid filling the lower part of one lung up to a meniscus-shaped line."""
    lungs = _lungs(mask)
    lung = lungs[rng.integers(len(lungs))]
    rows, cols = np.nonzero(lung)
    top, bottom = rows.min(), rows.max()
    level = bottom - rng.uniform(0.2, 0.45) * (bottom - top)
    xx = np.arange(mask.shape[1])
    centre = cols.mean()
    meniscus = level - 0.15 * (bottom - top) * ((xx - centre) / max(np.ptp(cols), 1)) ** 2 * 4
    yy = np.arange(mask.shape[0])[:, None]
    edge = max(1.0, 0.03 * mask.shape[0])
    return np.clip((yy - meniscus[None, :]) / edge + 0.5, 0, 1) * lung


def _bilateral(mask, rng):
    """Patchy or ground-glass opacities in both lungs, peripheral and lower zones favoured."""
    field = ndimage.gaussian_filter(rng.normal(size=mask.shape), mask.shape[0] / 16)
    field = (field - field.mean()) / (field.std() + 1e-6)
    yy = np.linspace(0, 1, mask.shape[0])[:, None]
    field = np.clip(field + 2.5 * yy - rng.uniform(0.5, 1.5), 0, None)
    return np.clip(field / (field.max() + 1e-6) * 1.5, 0, 1) * (mask > 0)


DISEASES = {"consolidation": _consolidation, "effusion": _effusion, "bilateral": _bilateral}


def disease_shift(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
    """Paint one simulated disease inside the lungs: (image, name); the mask is unchanged."""
    if not mask.any():
        return image, "none"
    name = list(DISEASES)[rng.integers(len(DISEASES))]
    alpha = DISEASES[name](mask, rng) * rng.uniform(0.75, 0.95)
    tissue = np.percentile(image[mask == 0], 90) if (mask == 0).any() else 200.0
    return paint_opacity(image, ndimage.gaussian_filter(alpha, 1.0), tissue), name


# --------------------------------------------------------------------------- sources
def _hw(array) -> np.ndarray:
    array = np.asarray(array)
    return array[..., 0] if array.ndim == 3 else array


class ShiftedSource:
    """``source`` (examples with 'image' and 'label' or 'mask') with ``shift`` applied to
    example ``indices[i]``, deterministic per (seed, i); computed once and kept."""

    def __init__(self, source, shift: str, seed: int, indices=None):
        self._source, self._shift, self._seed = source, shift, seed
        self._indices = np.arange(len(source)) if indices is None else np.asarray(indices)
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self._indices)

    @property
    def indices(self) -> np.ndarray:
        """The ``source`` example each example is a shifted copy of."""
        return self._indices

    def __getitem__(self, i: int) -> dict:
        if i not in self._cache:
            example = dict(self._source[int(self._indices[i])])
            rng = np.random.default_rng([self._seed, int(i)])
            image = _hw(example["image"])
            mask = _hw(example["mask"]) if "mask" in example else None
            if self._shift == "acquisition":
                image, mask, _ = acquisition_shift(image, mask, rng)
            else:
                image, _ = disease_shift(image, mask, rng)
            example["image"] = image
            if mask is not None:
                example["mask"] = mask
            self._cache[i] = example
        return self._cache[i]


def balanced_indices(labels: np.ndarray, seed: int) -> np.ndarray:
    """A 50/50 class prior: every film of the rarer class and as many of the other, by seed."""
    labels = np.asarray(labels)
    per_class = [np.flatnonzero(labels == c) for c in (0, 1)]
    n = min(len(p) for p in per_class)
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(p, n, replace=False) for p in per_class]))


def shifted_sources(val_sets: Mapping[str, tuple], seed: int = 0) -> dict:
    """name -> (task, source) of the shifted copies of ``val_sets`` (VAL_CLS, VAL_SEG)."""
    sets = {}
    if VAL_CLS in val_sets:
        source = val_sets[VAL_CLS][1]
        labels = np.asarray([source[i]["label"] for i in range(len(source))])
        if labels.min() != labels.max():
            sets[VAL_CLS_SHIFTED] = (CLASSIFICATION, ShiftedSource(
                source, "acquisition", seed, balanced_indices(labels, seed)))
    if VAL_SEG in val_sets:
        source = val_sets[VAL_SEG][1]
        sets[VAL_SEG_SHIFTED] = (SEGMENTATION, ShiftedSource(source, "acquisition", seed + 1))
        sets[VAL_SEG_DISEASE] = (SEGMENTATION, ShiftedSource(source, "disease", seed + 2))
    return sets
