"""Host-side (numpy) evaluation metrics for MultiMix.

Everything here runs on the host on numpy arrays (jax arrays are accepted and
converted with ``np.asarray``).  Definitions follow ``shared/docs/method.md``
("Metrics"); every convention, including the empty-mask cases, is stated in the
docstring next to the code.

Classification (class 0 = NORMAL, class 1 = PNEUMONIA)
    accuracy, f1_per_class, roc_auc, confusion, classification_metrics

Segmentation (binary lung masks, H x W)
    binarize, dice, jaccard, averaged_hausdorff (reported as "HD"), hd95, ssim,
    segmentation_metrics_per_image, segmentation_metrics

Conventions shared by the segmentation metrics
    * Masks: a bool array is used as is; any other dtype is binarised with
      ``binarize(x, 0.5)`` i.e. ``x >= 0.5`` (so {0,1} ints, {0.,1.} floats
      and sigmoid probabilities all work; {0,255} uint8 also works).
    * Distances are Euclidean distances between pixel centres, in pixels
      (``scipy.ndimage.distance_transform_edt`` on the complement of a mask).
    * Both masks empty: dice = jaccard = 1.0, hd = hd95 = 0.0 (perfect
      agreement).  Exactly one mask empty: dice = jaccard = 0.0 and
      hd = hd95 = NaN (a point-to-set distance to the empty set is undefined;
      NaN, like MONAI, rather than inf so that batch means stay finite).  The
      batch aggregate uses a NaN-aware mean and reports how many images were
      undefined (``hd_undefined`` / ``hd95_undefined``).
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity
from sklearn import metrics as skm

NORMAL = 0
PNEUMONIA = 1
CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # index = label

# 4-connected (cross) structuring element used to extract mask boundaries,
# as in medpy's hd95 (generate_binary_structure(2, connectivity=1)).
_CROSS = ndimage.generate_binary_structure(2, 1)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def binarize(prob, threshold: float = 0.5) -> np.ndarray:
    """Binary mask ``prob >= threshold`` (bool array, same shape)."""
    return np.asarray(prob) >= threshold


def _mask(x) -> np.ndarray:
    """Bool mask: bool input unchanged, anything else ``>= 0.5``."""
    x = np.asarray(x)
    if x.dtype == np.bool_:
        return x
    return x >= 0.5


def _pair(pred, true) -> Tuple[np.ndarray, np.ndarray]:
    p, t = _mask(pred), _mask(true)
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {t.shape}")
    return p, t


def _valid_index(n: int, valid) -> np.ndarray:
    """Boolean selector of length n (all True when ``valid`` is None)."""
    if valid is None:
        return np.ones(n, dtype=bool)
    v = np.asarray(valid).astype(bool).reshape(-1)
    if v.shape[0] != n:
        raise ValueError(f"valid has {v.shape[0]} entries, expected {n}")
    return v


def _nanmean(x: np.ndarray) -> float:
    """Mean over non-NaN entries; NaN (without a warning) when none."""
    x = np.asarray(x, dtype=np.float64)
    ok = ~np.isnan(x)
    return float(x[ok].mean()) if ok.any() else float("nan")


# --------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------
def accuracy(labels, preds) -> float:
    """Fraction of examples with ``preds == labels``
    (``sklearn.metrics.accuracy_score``).  NaN for an empty input."""
    labels, preds = np.asarray(labels).reshape(-1), np.asarray(preds).reshape(-1)
    if labels.size == 0:
        return float("nan")
    return float(skm.accuracy_score(labels, preds))


def f1_per_class(labels, preds) -> Tuple[float, float]:
    """Per-class F1 ``(f1_normal, f1_pneumonia)``.

    For class c: F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c) with class c taken as
    the positive class (``sklearn.metrics.f1_score(labels=[0, 1],
    average=None)``).  Convention: a class absent from both ``labels`` and
    ``preds`` (TP = FP = FN = 0) has F1 = 1.0 (``zero_division=1.0``: nothing
    to find and nothing falsely found).  A class present in the labels but
    never predicted (or predicted but absent) gets F1 = 0.0 as usual.
    Empty input -> (NaN, NaN).
    """
    labels, preds = np.asarray(labels).reshape(-1), np.asarray(preds).reshape(-1)
    if labels.size == 0:
        return float("nan"), float("nan")
    f1 = skm.f1_score(labels, preds, labels=[NORMAL, PNEUMONIA], average=None,
                      zero_division=1.0)
    return float(f1[0]), float(f1[1])


def roc_auc(labels, prob_pneumonia) -> float:
    """Area under the ROC curve of ``prob_pneumonia`` for class 1
    (``sklearn.metrics.roc_auc_score``; ties count 1/2).  NaN when the labels
    contain only one class (or are empty): the AUC is undefined there."""
    labels = np.asarray(labels).reshape(-1)
    prob = np.asarray(prob_pneumonia, dtype=np.float64).reshape(-1)
    if np.unique(labels).size < 2:
        return float("nan")
    return float(skm.roc_auc_score(labels, prob))


def confusion(labels, preds) -> np.ndarray:
    """2x2 confusion matrix ``C[i, j]`` = #examples with true class i and
    predicted class j, classes ordered (NORMAL, PNEUMONIA)
    (``sklearn.metrics.confusion_matrix(labels=[0, 1])``)."""
    labels, preds = np.asarray(labels).reshape(-1), np.asarray(preds).reshape(-1)
    if labels.size == 0:
        return np.zeros((2, 2), dtype=np.int64)
    return skm.confusion_matrix(labels, preds, labels=[NORMAL, PNEUMONIA])


def classification_metrics(labels, prob_pneumonia, valid=None,
                           threshold: float = 0.5) -> Dict[str, float]:
    """Classification summary over a (possibly padded) evaluation set.

    ``preds = prob_pneumonia >= threshold`` (threshold 0.5).  Entries with
    ``valid == False`` (padding) are dropped before anything is computed.
    Returns ``{"accuracy", "f1_normal", "f1_pneumonia", "roc_auc", "n"}``
    where ``n`` is the number of valid examples (an int); see
    :func:`accuracy`, :func:`f1_per_class` and :func:`roc_auc` for the
    definitions and degenerate cases.
    """
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    prob = np.asarray(prob_pneumonia, dtype=np.float64).reshape(-1)
    if labels.shape != prob.shape:
        raise ValueError(f"labels {labels.shape} vs prob {prob.shape}")
    keep = _valid_index(labels.shape[0], valid)
    labels, prob = labels[keep], prob[keep]
    preds = (prob >= threshold).astype(np.int64)
    f1n, f1p = f1_per_class(labels, preds)
    return {
        "accuracy": accuracy(labels, preds),
        "f1_normal": f1n,
        "f1_pneumonia": f1p,
        "roc_auc": roc_auc(labels, prob),
        "n": int(labels.shape[0]),
    }


# --------------------------------------------------------------------------
# segmentation: overlap
# --------------------------------------------------------------------------
# Dice/Jaccard are written by hand: they are two pixel counts, and
# sklearn's f1_score/jaccard_score on flattened masks only add validation
# overhead and a different empty-mask convention.
def dice(pred, true) -> float:
    """Dice = 2 |P & T| / (|P| + |T|) over foreground pixels.
    Both empty -> 1.0; exactly one empty -> 0.0."""
    p, t = _pair(pred, true)
    s = int(p.sum()) + int(t.sum())
    if s == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, t).sum()) / s


def jaccard(pred, true) -> float:
    """Jaccard (IoU) = |P & T| / |P | T| over foreground pixels.
    Both empty -> 1.0; exactly one empty -> 0.0."""
    p, t = _pair(pred, true)
    union = int(np.logical_or(p, t).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(p, t).sum()) / union


# --------------------------------------------------------------------------
# segmentation: distances
# --------------------------------------------------------------------------
def _dist_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) from every pixel centre to the nearest
    pixel of the non-empty ``mask`` (0 on the mask)."""
    return ndimage.distance_transform_edt(~mask)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels: ``mask XOR erode(mask)`` with the 4-connected cross
    and zero padding outside the image (so foreground pixels on the image
    border are boundary pixels) -- medpy's definition."""
    return mask ^ ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


def averaged_hausdorff(pred, true) -> float:
    """Averaged Hausdorff distance ("HD" in the paper's table), in pixels.

    With P, T the foreground pixel sets (all pixels, not only boundaries) and
    d(x, S) = min_{s in S} ||x - s||_2 between pixel centres::

        AHD(P, T) = 1/2 * ( mean_{p in P} d(p, T) + mean_{t in T} d(t, P) )

    Both empty -> 0.0; exactly one empty -> NaN (see module docstring).
    """
    p, t = _pair(pred, true)
    empty = _distance_for_empty(p, t)
    if empty is not None:
        return empty
    d_pt = _dist_to(t)[p].mean()
    d_tp = _dist_to(p)[t].mean()
    return float(0.5 * (d_pt + d_tp))


def _distance_for_empty(p: np.ndarray, t: np.ndarray) -> float | None:
    """Both empty -> 0.0; exactly one empty -> NaN; both non-empty -> None (compute)."""
    has_p, has_t = bool(p.any()), bool(t.any())
    if not has_p and not has_t:
        return 0.0
    if has_p != has_t:
        return float("nan")
    return None


def hd95(pred, true) -> float:
    """95th-percentile symmetric boundary Hausdorff distance, in pixels
    (medpy ``hd95`` style).

    B_P, B_T = boundary pixels of P and T (see :func:`_boundary`).  The
    surface distances are d(b, B_T) for every b in B_P together with
    d(b, B_P) for every b in B_T; HD95 = ``np.percentile(all, 95)`` (linear
    interpolation) over that union of both directions.  (MONAI instead takes
    the max of the two directed 95th percentiles; slightly different.)
    Both empty -> 0.0; exactly one empty -> NaN.
    """
    p, t = _pair(pred, true)
    empty = _distance_for_empty(p, t)
    if empty is not None:
        return empty
    bp, bt = _boundary(p), _boundary(t)
    d = np.concatenate([_dist_to(bt)[bp], _dist_to(bp)[bt]])
    return float(np.percentile(d, 95))


def ssim(pred, true, win_size: int = 7) -> float:
    """Structural similarity between the two masks as float images in [0, 1]
    (``skimage.metrics.structural_similarity`` with ``data_range=1``, a
    uniform ``win_size`` x ``win_size`` window (default 7, skimage's
    default), no Gaussian weighting, K1=0.01, K2=0.03; mean SSIM over the
    valid (non-border) window positions).  Masks must be at least
    ``win_size`` pixels on each side.  Two empty masks -> 1.0 (identical
    constant images)."""
    p, t = _pair(pred, true)
    return float(structural_similarity(p.astype(np.float64),
                                       t.astype(np.float64),
                                       data_range=1.0, win_size=win_size))


# --------------------------------------------------------------------------
# batch aggregates
# --------------------------------------------------------------------------
_SEG_FUNCS = {
    "dice": dice,
    "jaccard": jaccard,
    "hd": averaged_hausdorff,
    "hd95": hd95,
    "ssim": ssim,
}


def _batch(masks) -> np.ndarray:
    m = _mask(masks)
    if m.ndim == 4 and m.shape[-1] == 1:  # NHWC with one channel
        m = m[..., 0]
    if m.ndim != 3:
        raise ValueError(f"expected (N, H, W) or (N, H, W, 1) masks, got {m.shape}")
    return m


def segmentation_metrics_per_image(pred_masks, true_masks,
                                   valid=None) -> Dict[str, np.ndarray]:
    """Per-image metric arrays (float64, one entry per *valid* image) for
    keys dice, jaccard, hd (averaged Hausdorff), hd95, ssim.

    Masks are (N, H, W) or (N, H, W, 1); non-bool arrays are binarised with
    ``>= 0.5``.  Images with ``valid == False`` are dropped.
    """
    p, t = _batch(pred_masks), _batch(true_masks)
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {t.shape}")
    keep = np.flatnonzero(_valid_index(p.shape[0], valid))
    return {k: np.array([f(p[i], t[i]) for i in keep], dtype=np.float64)
            for k, f in _SEG_FUNCS.items()}


def segmentation_metrics(pred_masks, true_masks, valid=None) -> Dict[str, float]:
    """Batch means of the per-image segmentation metrics.

    Returns ``{"dice", "jaccard", "hd", "hd95", "ssim", "n",
    "hd_undefined", "hd95_undefined"}``: each metric is the mean over the
    valid images; ``hd``/``hd95`` use a NaN-aware mean, skipping images where
    exactly one of the two masks is empty, and ``hd_undefined`` /
    ``hd95_undefined`` count those skipped images.  ``n`` = number of valid
    images; all means are NaN when ``n == 0`` (or when every hd is undefined).
    """
    per = segmentation_metrics_per_image(pred_masks, true_masks, valid)
    out: Dict[str, float] = {k: _nanmean(v) for k, v in per.items()}
    out["n"] = int(per["dice"].shape[0])
    out["hd_undefined"] = int(np.isnan(per["hd"]).sum())
    out["hd95_undefined"] = int(np.isnan(per["hd95"]).sum())
    return out
