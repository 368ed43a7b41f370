"""95% percentile bootstrap intervals over films, and paired comparisons of two models on the
same set (docs/multimix.md, Metrics), after Efron & Tibshirani 1993, "An introduction to
the bootstrap", ch. 13.

One (R, n) matrix of film indices is drawn per set from a fixed seed (the same for every model
evaluated on a set of n films, so two models' replicates are paired); every metric of all R
resamples is then computed at once from per-film quantities: correct/incorrect and the
confusion counts for the classification metrics, the Mann-Whitney count for ROC-AUC, the
per-bin sums for ECE, and the per-film Dice, HD95, ... for segmentation.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from multimix_jax import calibration, metrics, names

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95

# the per-film arrays kept for a set (predictions.npz) and resampled here
CLS_ARRAYS = ("label", "prob_pneumonia", "prob_pneumonia_uncalibrated")
SEG_ARRAYS = ("dice", "jaccard", "hd", "hd95", "ssim")


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) film indices drawn with replacement; the same for every call with the
    same (n, resamples, seed), so that replicates of two models on one set are paired."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = np.nan) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), empty)


def _roc_auc(labels: np.ndarray, prob: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """ROC-AUC of every resample: the Mann-Whitney U / (n_pos n_neg) with ties counted 1/2,
    from the per-resample counts of each class at each distinct score; NaN for a resample
    that lacks a class."""
    _, rank = np.unique(prob, return_inverse=True)
    levels = int(rank.max()) + 1
    offset = np.arange(idx.shape[0])[:, None] * levels
    counts = lambda cls: np.bincount((offset + rank[idx])[labels[idx] == cls],
                                     minlength=idx.shape[0] * levels).reshape(-1, levels)
    pos, neg = counts(names.PNEUMONIA), counts(names.NORMAL)
    below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower, per level
    u = (pos * (below + 0.5 * neg)).sum(axis=1)
    return _ratio(u, pos.sum(axis=1) * neg.sum(axis=1))


def _ece(labels: np.ndarray, prob: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """ECE (metrics.calibration_metrics) of every resample from per-bin sums."""
    bins = metrics.ECE_BINS
    cell = np.arange(idx.shape[0])[:, None] * bins + metrics.calibration_bin(prob)[idx]
    gap = np.bincount(cell.ravel(), weights=(labels - prob)[idx].ravel(),
                      minlength=idx.shape[0] * bins).reshape(-1, bins)
    return np.abs(gap).sum(axis=1) / idx.shape[1]


DECIDED = "decided_pneumonia"  # a set's per-film classes decided out of sample, if it has them


def _at_threshold(labels: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> dict:
    """The metrics of metrics.classification_metrics that depend on the predicted classes."""
    y, p = labels[idx] == names.PNEUMONIA, pred[idx]
    tp, tn = (y & p).sum(1), (~y & ~p).sum(1)
    fp, fn = (~y & p).sum(1), (y & ~p).sum(1)
    recall_p, recall_n = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    both = (tp + fn > 0) & (tn + fp > 0)
    return {"accuracy": (tp + tn) / idx.shape[1],
            "balanced_accuracy": np.where(both, (recall_p + recall_n) / 2, np.nan),
            "f1_normal": _ratio(2 * tn, 2 * tn + fn + fp, empty=1.0),
            "f1_pneumonia": _ratio(2 * tp, 2 * tp + fp + fn, empty=1.0),
            "precision_pneumonia": _ratio(tp, tp + fp),
            "recall_pneumonia": recall_p}


def classification_replicates(arrays: Mapping[str, np.ndarray], threshold: float,
                              idx: np.ndarray) -> dict[str, np.ndarray]:
    """metric -> (R,) values over the resamples ``idx`` of a classification set's per-film
    ``label`` and ``prob_pneumonia`` (and ``prob_pneumonia_uncalibrated`` where a temperature
    made it differ):
    the metrics of metrics.classification_metrics and metrics.calibration_metrics. Where the
    films carry their own ``decided_pneumonia`` (cross-fitted decisions, evaluate's validation
    sets) those classes are resampled instead of ``prob_pneumonia >= threshold``."""
    labels = np.asarray(arrays["label"], np.int64)
    prob = np.asarray(arrays["prob_pneumonia"], np.float64)
    classes = (np.asarray(arrays[DECIDED], bool) if DECIDED in arrays else prob >= threshold)
    out = _at_threshold(labels, classes, idx)
    out["accuracy_at_0.5"] = _at_threshold(labels, prob >= names.DEFAULT_THRESHOLD,
                                           idx)["accuracy"]
    out["roc_auc"] = _roc_auc(labels, prob, idx)
    out["ece"] = _ece(labels, prob, idx)
    out["brier"] = ((prob - labels) ** 2)[idx].mean(axis=1)
    raw = calibration.uncalibrated(arrays)
    if raw is not None:
        raw = np.asarray(raw, np.float64)
        out["ece_uncalibrated"] = _ece(labels, raw, idx)
        out["brier_uncalibrated"] = ((raw - labels) ** 2)[idx].mean(axis=1)
    return out


def segmentation_replicates(arrays: Mapping[str, np.ndarray],
                            idx: np.ndarray) -> dict[str, np.ndarray]:
    """metric -> (R,) means over the resamples ``idx`` of a segmentation set's per-film
    metrics (metrics.per_image_segmentation)."""
    return {k: np.asarray(arrays[k], np.float64)[idx].mean(axis=1)
            for k in SEG_ARRAYS if k in arrays}


def replicates(task: str, arrays: Mapping[str, np.ndarray], threshold: float,
               idx: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of one set over the resamples ``idx``."""
    if task == names.CLASSIFICATION:
        return classification_replicates(arrays, threshold, idx)
    return segmentation_replicates(arrays, idx)


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> list[float]:
    """[lo, hi]: the (1 - level)/2 and (1 + level)/2 percentiles of the finite replicates;
    [NaN, NaN] when none is finite (a metric undefined on every resample)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [float("nan"), float("nan")]
    tail = 100 * (1 - level) / 2
    return [float(v) for v in np.percentile(values, [tail, 100 - tail])]


def set_intervals(task: str, arrays: Mapping[str, np.ndarray], threshold: float = 0.5,
                  resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, list[float]]:
    """metric -> [lo, hi], the 95% percentile bootstrap interval of every metric of one set
    (``sets.NAME.ci`` in results.json); {} for an empty set."""
    n = len(arrays["label" if task == names.CLASSIFICATION else "dice"])
    if n == 0:
        return {}
    idx = resample_indices(n, resamples, seed)
    return {k: percentile_interval(v) for k, v in replicates(task, arrays, threshold, idx).items()}


def paired_difference(task: str, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray],
                      threshold_a: float = 0.5, threshold_b: float = 0.5,
                      resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, dict]:
    """metric -> {"a", "b", "difference" (b - a), "ci" (its 95% interval), "excludes_zero"}
    for two models' per-film arrays on the SAME films in the same order: both are resampled
    with the same indices, so the interval is of the paired difference."""
    n = len(a["label" if task == names.CLASSIFICATION else "dice"])
    idx = resample_indices(n, resamples, seed)
    whole = np.arange(n)[None, :]
    point_a, point_b = replicates(task, a, threshold_a, whole), replicates(task, b, threshold_b, whole)
    reps_a, reps_b = replicates(task, a, threshold_a, idx), replicates(task, b, threshold_b, idx)
    out = {}
    for key in reps_a.keys() & reps_b.keys():
        lo, hi = percentile_interval(reps_b[key] - reps_a[key])
        out[key] = {"a": float(point_a[key][0]), "b": float(point_b[key][0]),
                    "difference": float(point_b[key][0] - point_a[key][0]), "ci": [lo, hi],
                    "excludes_zero": bool(lo > 0 or hi < 0)}
    return {key: out[key] for key in reps_a if key in out}


def per_film(task: str, predictions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-film arrays of one set's predictions that its intervals (and a later paired
    comparison, from predictions.npz) resample: label and probabilities, or each film's
    segmentation metrics (masks thresholded at 0.5)."""
    if task == names.CLASSIFICATION:
        return {k: np.asarray(predictions[k]) for k in CLS_ARRAYS
                if predictions.get(k) is not None}
    return metrics.per_image_segmentation(metrics.binarize(predictions["mask_prob"]),
                                          predictions["mask"] > 0)
