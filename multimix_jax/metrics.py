"""Host-side (numpy) evaluation metrics (docs/multimix.md, Metrics).

Classification (class 0 = NORMAL, class 1 = PNEUMONIA)
    classification_metrics at a decision threshold on P(pneumonia); balanced_threshold, the
    threshold that maximises balanced accuracy; calibration_metrics (expected calibration
    error over 15 equal-width bins, Brier score) of P(pneumonia).

Segmentation (binary lung masks, H x W)
    binarize, boundary, dice, jaccard, averaged_hausdorff (reported as "HD"), hd95, ssim,
    per_image_segmentation, segmentation_metrics.

Conventions shared by the segmentation metrics
    * Masks: a bool array is used as is; any other dtype is binarised with ``x >= 0.5``.
    * Distances are Euclidean distances between pixel centres, in pixels.
    * Both masks empty: dice = jaccard = 1, hd = hd95 = 0 (perfect agreement).
    * Exactly one mask empty (in practice: the model predicted no lung): dice = jaccard = 0 and
      hd = hd95 = the image diagonal ``hypot(H, W)``, a penalty larger than any distance between
      two pixel centres. Such an image therefore weighs in the HD/HD95 means as the worst
      possible result instead of silently leaving them; ``segmentation_metrics`` also counts
      the empty predicted masks (``empty_pred``) and the penalised images (``hd_penalised``),
      and every results table shows the count.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity
from sklearn import metrics as skm

from multimix_jax.names import DEFAULT_THRESHOLD, NORMAL, PNEUMONIA

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


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p, t = _mask(pred), _mask(true)
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {t.shape}")
    return p, t


def _mean(x: np.ndarray) -> float:
    """Mean; NaN (without a warning) for an empty array."""
    return float(np.mean(x)) if np.size(x) else float("nan")


# --------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------
def _labels_and_probs(labels, prob_pneumonia) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    prob = np.asarray(prob_pneumonia, dtype=np.float64).reshape(-1)
    if labels.shape != prob.shape:
        raise ValueError(f"labels {labels.shape} vs prob {prob.shape}")
    return labels, prob


def _has_both_classes(labels: np.ndarray) -> bool:
    return bool((labels == NORMAL).any() and (labels == PNEUMONIA).any())


def balanced_threshold(labels, prob_pneumonia) -> float:
    """The threshold t on P(pneumonia) (predict PNEUMONIA when ``prob >= t``) that maximises
    balanced accuracy = (sensitivity + specificity) / 2, i.e. Youden's J = TPR - FPR
    (docs/multimix.md, Decision threshold and calibration).

    ``sklearn.metrics.roc_curve`` lists every cut; a cut at score ``s_k`` gives the same
    predictions for every t in ``(s_{k+1}, s_k]``. The returned t is the midpoint of such a
    maximising interval (between 0 and the lowest score, or the highest score and 1, at the
    ends), so no score sits at or just below it and a film does not flip under rounding noise;
    among several maximising intervals, the midpoint closest to 0.5.
    0.5 when ``labels`` lack one of the two classes (balanced accuracy is undefined).
    """
    labels, prob = _labels_and_probs(labels, prob_pneumonia)
    if not _has_both_classes(labels):
        return DEFAULT_THRESHOLD
    fpr, tpr, upper = skm.roc_curve(labels, prob, drop_intermediate=False)
    youden = tpr - fpr
    best = np.flatnonzero(youden >= youden.max() - 1e-12)
    lower = np.r_[upper[1:], -np.inf][best]  # exclusive lower end of each best interval
    high = upper[best]
    # the open ends: above the highest score (up to 1) and below the lowest (down to 0)
    bottom = ~np.isfinite(lower)
    high = np.where(np.isfinite(high), high, np.maximum(1.0, lower))
    middle = np.where(bottom, np.minimum(0.0, high), lower) / 2 + high / 2
    # scores 1 ulp apart: the midpoint rounds onto an end; keep it inside (lower, high]
    middle = np.where(bottom | (middle > lower), middle, np.nextafter(lower, np.inf))
    return float(middle[np.argmin(np.abs(middle - DEFAULT_THRESHOLD))])


def classification_metrics(labels, prob_pneumonia,
                           threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """Classification summary of one evaluation set at a decision threshold
    (docs/multimix.md, Metrics).

    Predicted class: PNEUMONIA when ``prob_pneumonia >= threshold``. Returns

    * ``accuracy``, ``balanced_accuracy`` (mean of the two per-class recalls; NaN unless both
      classes occur in ``labels``), ``f1_normal``, ``f1_pneumonia``, ``precision_pneumonia``,
      ``recall_pneumonia`` (sensitivity) -- all at ``threshold``;
    * ``accuracy_at_0.5``, for comparison with the default threshold;
    * ``roc_auc`` of ``prob_pneumonia`` (threshold-free; NaN unless both classes occur);
    * ``threshold`` (the one used) and ``n`` (the number of examples).

    F1 of class c = 2 TP / (2 TP + FP + FN) with c positive; a class absent from both labels
    and predictions scores 1 (nothing to find, nothing falsely found). Precision of a class
    never predicted is NaN. Everything but ``n`` and ``threshold`` is NaN for an empty set.
    """
    labels, prob = _labels_and_probs(labels, prob_pneumonia)
    n = int(labels.shape[0])
    keys = ("accuracy", "balanced_accuracy", "f1_normal", "f1_pneumonia", "precision_pneumonia",
            "recall_pneumonia", "accuracy_at_0.5", "roc_auc")
    if n == 0:
        return {**dict.fromkeys(keys, float("nan")), "threshold": float(threshold), "n": 0}
    preds = (prob >= threshold).astype(np.int64)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        labels, preds, labels=[NORMAL, PNEUMONIA], zero_division=np.nan)
    f1 = np.nan_to_num(f1, nan=1.0)  # NaN only when the class is absent from both
    both = _has_both_classes(labels)
    return {
        "accuracy": float(np.mean(preds == labels)),
        "balanced_accuracy": float(np.mean(recall)) if both else float("nan"),
        "f1_normal": float(f1[NORMAL]),
        "f1_pneumonia": float(f1[PNEUMONIA]),
        "precision_pneumonia": float(precision[PNEUMONIA]),
        "recall_pneumonia": float(recall[PNEUMONIA]),
        "accuracy_at_0.5": float(np.mean((prob >= 0.5) == labels)),
        "roc_auc": float(skm.roc_auc_score(labels, prob)) if both else float("nan"),
        "threshold": float(threshold),
        "n": n,
    }


ECE_BINS = 15


def calibration_bin(prob_pneumonia, bins: int = ECE_BINS) -> np.ndarray:
    """Index of each probability's equal-width bin of [0, 1] (bin k holds [k/bins, (k+1)/bins),
    the last one also 1.0)."""
    prob = np.asarray(prob_pneumonia, dtype=np.float64)
    return np.clip(np.floor(prob * bins).astype(np.int64), 0, bins - 1)


def calibration_metrics(labels, prob_pneumonia, bins: int = ECE_BINS) -> dict[str, float]:
    """Calibration of P(pneumonia) (docs/multimix.md, Metrics):

    * ``ece``: expected calibration error of the positive class over ``bins`` equal-width
      bins of P(pneumonia), sum_b (n_b / n) |mean label_b - mean P_b| (the weighted gap of the
      reliability diagram of P(pneumonia)); Guo et al. 2017, "On calibration of modern neural
      networks", bin the top-class confidence instead, which folds P and 1 - P together;
    * ``brier``: mean (P(pneumonia) - label)^2 (Brier 1950).

    Both NaN for an empty set.
    """
    labels, prob = _labels_and_probs(labels, prob_pneumonia)
    if labels.size == 0:
        return {"ece": float("nan"), "brier": float("nan")}
    b = calibration_bin(prob, bins)
    gap = np.bincount(b, weights=labels - prob, minlength=bins)
    return {"ece": float(np.abs(gap).sum() / labels.size),
            "brier": float(np.mean((prob - labels) ** 2))}


TRIVIAL_RULES = ("all_pneumonia", "all_normal", "training_prior")


def trivial_rule_probs(rule: str, n: int, prior: float | None) -> np.ndarray | None:
    """The constant P(pneumonia) of a trivial rule for ``n`` films: 1 (all pneumonia), 0 (all
    normal), or ``prior``, the labelled training films' pneumonia fraction (None when unknown:
    no rule)."""
    value = {"all_pneumonia": 1.0, "all_normal": 0.0, "training_prior": prior}[rule]
    return None if value is None else np.full(n, float(value))


def trivial_rules(labels, prior: float | None = None) -> dict[str, dict[str, float]]:
    """rule -> classification_metrics + calibration_metrics of the rules that ignore the film
    (docs/multimix.md, Metrics): no model's figure means anything below them. Each predicts a
    constant probability (:func:`trivial_rule_probs`) classified at the default threshold,
    so the training-prior rule calls every film the training set's majority class; its ECE
    and Brier score are the reference for a model's calibration."""
    labels = np.asarray(labels).reshape(-1)
    out = {}
    for rule in TRIVIAL_RULES:
        prob = trivial_rule_probs(rule, labels.size, prior)
        if prob is not None:
            out[rule] = {**classification_metrics(labels, prob, DEFAULT_THRESHOLD),
                         **calibration_metrics(labels, prob)}
    return out


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


def boundary(mask) -> np.ndarray:
    """Boundary pixels: ``mask XOR erode(mask)`` with the 4-connected cross
    and zero padding outside the image (so foreground pixels on the image
    border are boundary pixels) -- medpy's definition. The one mask boundary of
    the package (HD95 here, the true-mask outline of ``pictures.overlay_rgb``)."""
    mask = _mask(mask)
    return mask ^ ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


def _distance_for_empty(p: np.ndarray, t: np.ndarray) -> float | None:
    """Both empty -> 0.0; exactly one empty -> the image diagonal (the penalty, see the module
    docstring); both non-empty -> None (compute)."""
    has_p, has_t = bool(p.any()), bool(t.any())
    if not has_p and not has_t:
        return 0.0
    if has_p != has_t:
        return float(np.hypot(*p.shape))
    return None


def averaged_hausdorff(pred, true) -> float:
    """Averaged Hausdorff distance ("HD" in the paper's table), in pixels.

    With P, T the foreground pixel sets (all pixels, not only boundaries) and
    d(x, S) = min_{s in S} ||x - s||_2 between pixel centres::

        AHD(P, T) = 1/2 * ( mean_{p in P} d(p, T) + mean_{t in T} d(t, P) )

    Both empty -> 0.0; exactly one empty -> the image diagonal (module docstring).
    """
    p, t = _pair(pred, true)
    empty = _distance_for_empty(p, t)
    if empty is not None:
        return empty
    d_pt = _dist_to(t)[p].mean()
    d_tp = _dist_to(p)[t].mean()
    return float(0.5 * (d_pt + d_tp))


def hd95(pred, true) -> float:
    """95th-percentile symmetric boundary Hausdorff distance, in pixels
    (medpy ``hd95`` style).

    B_P, B_T = boundary pixels of P and T (see :func:`boundary`).  The
    surface distances are d(b, B_T) for every b in B_P together with
    d(b, B_P) for every b in B_T; HD95 = ``np.percentile(all, 95)`` (linear
    interpolation) over that union of both directions.  (MONAI instead takes
    the max of the two directed 95th percentiles; slightly different.)
    Both empty -> 0.0; exactly one empty -> the image diagonal (module docstring).
    """
    p, t = _pair(pred, true)
    empty = _distance_for_empty(p, t)
    if empty is not None:
        return empty
    bp, bt = boundary(p), boundary(t)
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


def per_image_segmentation(pred_masks, true_masks) -> dict[str, np.ndarray]:
    """Each image's dice, jaccard, hd, hd95 and ssim (float64 arrays of length N), for the
    means of :func:`segmentation_metrics` and the bootstrap intervals (multimix_jax/intervals.py)."""
    p, t = _batch(pred_masks), _batch(true_masks)
    if p.shape != t.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {t.shape}")
    return {k: np.array([f(p[i], t[i]) for i in range(p.shape[0])], dtype=np.float64)
            for k, f in _SEG_FUNCS.items()}


def segmentation_metrics(pred_masks, true_masks,
                         per_image: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
    """Means over the images of dice, jaccard, hd, hd95 and ssim (docs/multimix.md, Metrics).

    Masks are (N, H, W) or (N, H, W, 1); non-bool arrays are binarised with ``>= 0.5``.
    Also returns ``n`` (images), ``empty_pred`` (images whose predicted mask is empty) and
    ``hd_penalised`` (images with exactly one empty mask, whose hd and hd95 are the image
    diagonal: see the module docstring). The means are NaN when ``n == 0``. ``per_image``:
    the masks' :func:`per_image_segmentation`, when already computed.
    """
    p, t = _batch(pred_masks), _batch(true_masks)
    per_image = per_image if per_image is not None else per_image_segmentation(p, t)
    out: dict[str, float] = {k: _mean(per_image[k]) for k in _SEG_FUNCS}  # not key, group
    pred_empty, true_empty = ~p.any(axis=(1, 2)), ~t.any(axis=(1, 2))
    out["n"] = int(p.shape[0])
    out["empty_pred"] = int(pred_empty.sum())
    out["hd_penalised"] = int((pred_empty != true_empty).sum())
    return out
