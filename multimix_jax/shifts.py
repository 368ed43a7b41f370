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
* ``val_seg_disease_hard``: the films of severely ill patients: a dense opacity that hides
  the lung's border (white-out of a lobe, a consolidation on the heart or diaphragm border, a
  large effusion), often a second one, tubes, lines and ECG leads, burnt-in text, and a
  shallow-breath (low inspiration) or rotated film; the true mask follows the geometry only.
  Reported beside the others, not part of the selection score.

The training augmentations (``augment.py``) are drawn independently and with other generators
(smooth-noise opacities, milder photometric jitter), but the families overlap: a recipe that
trains on these shifts is favoured on this proxy, which is said wherever it is reported.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
from scipy import ndimage
from skimage import draw, exposure

from multimix_jax.augment import paint_opacity, rotate_zoom_shift, to_uint8
from multimix_jax.sources import source_groups, source_keys
from multimix_jax.names import (CLASSIFICATION, SEGMENTATION, VAL_CLS, VAL_CLS_SHIFTED, VAL_SEG,
                                VAL_SEG_DISEASE, VAL_SEG_DISEASE_HARD, VAL_SEG_SHIFTED)


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


def scanner_curve(image: np.ndarray, steepness: float, midpoint: float) -> np.ndarray:
    """Another scanner's characteristic (sigmoid) curve, normalised to [0, 1]."""
    s = lambda x: 1 / (1 + np.exp(-steepness * (x - midpoint)))
    return _lut(image, lambda x: (s(x) - s(0)) / (s(1) - s(0)))


def _scanner_curve(image, rng):
    return scanner_curve(image, rng.uniform(5, 10), rng.uniform(0.35, 0.65))


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


# --------------------------------------------------------------------------- severe disease
def _pick_lung(mask, rng):
    lungs = _lungs(mask)
    return lungs[rng.integers(len(lungs))]


def _spill(region, mask, rng):
    """``region`` grown 2-5% of the film past its edge, so the lung border under it vanishes."""
    grow = max(1, int(round(rng.uniform(0.02, 0.05) * mask.shape[0])))
    return ndimage.binary_dilation(region, iterations=grow)


def _white_out(mask, rng):
    """The upper or lower lobe, or the whole of one lung, at soft-tissue density."""
    lung = _pick_lung(mask, rng)
    rows = np.nonzero(lung)[0]
    cut = rows.min() + rng.uniform(0.4, 0.6) * (rows.max() - rows.min())
    yy, xx = np.mgrid[:mask.shape[0], :mask.shape[1]]
    fissure = cut + rng.uniform(-0.4, 0.4) * (xx - mask.shape[1] / 2)  # an oblique fissure
    part = [yy < fissure, yy >= fissure, np.ones_like(yy, bool)][rng.integers(3)]
    return _spill(lung & part, mask, rng).astype(np.float32)


def _border_consolidation(mask, rng):
    """A dense consolidation centred on the lung's border (heart or diaphragm side), half of it
    outside the lung."""
    lung = _pick_lung(mask, rng)
    edge = lung & ~ndimage.binary_erosion(lung)
    rows, cols = np.nonzero(edge)
    lower = rows >= np.median(rows)  # the diaphragm and heart borders
    rows, cols = rows[lower], cols[lower]
    i = rng.integers(len(rows))
    height = np.ptp(np.nonzero(lung)[0]) + 1
    blob = _smooth_blob(mask.shape, rng, (rows[i], cols[i]), rng.uniform(0.25, 0.4) * height)
    return np.clip(blob * 1.5, 0, 1)


def _large_effusion(mask, rng):
    """Fluid up to 40-70% of one lung's height with a meniscus rising to the side wall, dense,
    hiding the diaphragm and the costophrenic angle."""
    lung = _pick_lung(mask, rng)
    rows, cols = np.nonzero(lung)
    top, bottom = rows.min(), rows.max()
    level = bottom - rng.uniform(0.4, 0.7) * (bottom - top)
    xx = np.arange(mask.shape[1])
    lateral = cols.min() if cols.mean() < mask.shape[1] / 2 else cols.max()
    rise = 0.2 * (bottom - top) * (1 - np.abs(xx - lateral) / max(np.ptp(cols), 1)).clip(0, 1)
    yy = np.arange(mask.shape[0])[:, None]
    fluid = yy >= (level - rise)[None, :]
    return (_spill(lung, mask, rng) & fluid).astype(np.float32)


SEVERE = {"white_out": _white_out, "border_consolidation": _border_consolidation,
          "large_effusion": _large_effusion}


def _tubes_and_leads(image, rng):
    """Bright overlays of an ICU film: a tube down the midline, a central line from a shoulder,
    ECG electrodes with their wires."""
    n, out = image.shape[0], image.copy()
    value = lambda: int(rng.uniform(215, 255))
    width = max(1, int(round(0.012 * n)))
    paint = np.zeros_like(image, bool)
    x0 = n / 2 + rng.uniform(-0.05, 0.05) * n  # tube: a gentle curve from the top edge
    end = int(rng.uniform(0.35, 0.7) * n)
    ys = np.arange(end)
    xs = np.clip(np.round(x0 + 0.03 * n * np.sin(ys / max(end, 1) * np.pi)), 0, n - 1).astype(int)
    paint[ys, xs] = True
    side = rng.choice([0.15, 0.85]) * n  # central line: shoulder to the centre
    rr, cc = draw.line(int(0.1 * n), int(side), int(rng.uniform(0.35, 0.5) * n), int(n / 2))
    paint[rr, cc] = True
    paint = ndimage.binary_dilation(paint, iterations=width)
    for _ in range(rng.integers(2, 5)):  # electrodes: bright rings, a wire to the film's edge
        r, c = rng.uniform(0.05, 0.95, 2) * n
        rr, cc = draw.disk((r, c), max(2, 0.025 * n), shape=image.shape)
        paint[rr, cc] = True
        rr, cc = draw.line(int(r), int(c), int(rng.choice([0, n - 1])), int(rng.uniform(0, n - 1)))
        paint[rr, cc] = True
    out[paint] = value()
    return out


def _burnt_in_text(image, rng):
    """A block of burnt-in annotation (rows of glyph-sized bright marks) in a corner."""
    n, out = image.shape[0], image.copy()
    glyph = max(2, int(round(0.03 * n)))
    r0 = int(rng.choice([0.02, 0.85]) * n)
    c0 = int(rng.choice([0.02, 0.6]) * n)
    for line in range(rng.integers(1, 4)):
        for k in range(rng.integers(4, 10)):
            r, c = r0 + line * 2 * glyph, c0 + k * (glyph + 1)
            if r + glyph < n and c + glyph < n and rng.random() < 0.85:
                out[r:r + glyph, c:c + max(1, glyph - 1)] = int(rng.uniform(220, 255))
    return out


def _severe_geometry(image, mask, rng):
    """A shallow-breath film (lungs 10-22% shorter, seen larger from the front: an AP film) or a
    rotated one (8-15 degrees), image and mask alike."""
    if rng.random() < 0.5:
        return rotate_zoom_shift(image, mask, rng.uniform(-4, 4), rng.uniform(1.0, 1.1),
                                 rng.uniform(1.25, 1.6), (rng.uniform(0.0, 0.06) * image.shape[0], 0))
    return rotate_zoom_shift(image, mask, rng.choice([-1, 1]) * rng.uniform(8, 15),
                             rng.uniform(0.9, 1.05), 1.0)


def severe_disease_shift(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
    """The film of a severely ill patient (``val_seg_disease_hard``): a geometry (shallow breath
    or rotation), one dense opacity hiding the lung border, half the time a second (a severe
    one or bilateral opacities), ICU overlays (70%) and burnt-in text (50%).
    Returns (image, mask, names); the mask is the true lung mask, moved by the geometry only."""
    if not mask.any():
        return image, mask, ["none"]
    image, mask = _severe_geometry(image, mask, rng)
    if not mask.any():
        return image, mask, ["none"]
    names = [list(SEVERE)[rng.integers(len(SEVERE))]]
    alpha = SEVERE[names[0]](mask, rng) * rng.uniform(0.9, 1.0)
    if rng.random() < 0.5:
        extra = list(SEVERE) + ["bilateral"]
        names.append(extra[rng.integers(len(extra))])
        make = SEVERE.get(names[-1], _bilateral)
        alpha = np.maximum(alpha, make(mask, rng) * rng.uniform(0.8, 1.0))
    tissue = np.percentile(image[mask == 0], 90) if (mask == 0).any() else 200.0
    texture = ndimage.gaussian_filter(rng.normal(size=mask.shape), 0.03 * mask.shape[0])
    alpha = alpha * (0.9 + 0.1 * texture / (np.abs(texture).max() + 1e-6))
    image = paint_opacity(image, ndimage.gaussian_filter(alpha, 0.015 * mask.shape[0]), tissue)
    if rng.random() < 0.7:
        image, names = _tubes_and_leads(image, rng), names + ["lines"]
    if rng.random() < 0.5:
        image, names = _burnt_in_text(image, rng), names + ["text"]
    return image, mask, names


# --------------------------------------------------------------------------- sources
def as_hw(array) -> np.ndarray:
    """A (H, W) view of an (H, W) or (H, W, 1) array."""
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

    @property
    def keys(self) -> np.ndarray:
        """The key of the film each example is a copy of."""
        return source_keys(self._source)[self._indices]

    @property
    def groups(self) -> np.ndarray:
        """The patient group of the film each example is a copy of: a film and its shifted
        copy are one patient's (one fold, one bootstrap draw)."""
        return source_groups(self._source)[self._indices]

    def __getitem__(self, i: int) -> dict:
        if i not in self._cache:
            example = dict(self._source[int(self._indices[i])])
            rng = np.random.default_rng([self._seed, int(i)])
            image = as_hw(example["image"])
            mask = as_hw(example["mask"]) if "mask" in example else None
            if self._shift == "acquisition":
                image, mask, _ = acquisition_shift(image, mask, rng)
            elif self._shift == "severe":
                image, mask, _ = severe_disease_shift(image, mask, rng)
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
        sets[VAL_SEG_DISEASE_HARD] = (SEGMENTATION, ShiftedSource(source, "severe", seed + 3))
    return sets
