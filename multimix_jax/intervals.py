"""95% percentile bootstrap intervals over patients (films where patients are unknown), and
paired comparisons of two models on the same set (docs/multimix.md, Metrics), after Efron &
Tibshirani 1993, "An introduction to the bootstrap", ch. 13; resampling whole patients is the
cluster bootstrap of Davison & Hinkley 1997, section 3.8 (a patient's films are not
independent draws).

One (R, n) matrix of weights is drawn per set from a fixed seed: how often each film is in each
resample, every film of a drawn patient once per draw (the same for every model evaluated on
the same films, so two models' replicates are paired); every metric of all R resamples is then
computed at once from weighted per-film quantities: correct/incorrect and the confusion counts
for the classification metrics, the Mann-Whitney count for ROC-AUC, the per-bin sums for ECE,
and the per-film Dice, HD95, ... for segmentation.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from multimix_jax import calibration, metrics, names

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95

# the per-film arrays kept for a set (predictions.npz) and resampled here
CLS_ARRAYS = ("label", "prob_pneumonia", "prob_pneumonia_uncalibrated")
SEG_ARRAYS = ("dice", "jaccard", "hd", "hd95", "ssim")
KEY, GROUP = "key", "group"  # each film's name in its set, and its patient (predictions.npz)


def resample_weights(n: int, groups: Sequence[str] | None = None, resamples: int = RESAMPLES,
                     seed: int = SEED) -> np.ndarray:
    """(resamples, n) draw counts of each film: as many patients as the set has, drawn with
    replacement, each bringing all of its films (``groups``: a patient id per film; None: one
    per film, the ordinary bootstrap over films). The same for every call with the same
    arguments, so that replicates of two models on one set are paired."""
    group_of = (np.arange(n) if groups is None
                else np.unique(np.asarray(groups, str), return_inverse=True)[1].ravel())
    count = int(group_of.max()) + 1 if n else 0
    draws = np.random.default_rng(seed).integers(0, max(count, 1), size=(resamples, count))
    offset = np.arange(resamples)[:, None] * count
    drawn = np.bincount((offset + draws).ravel(), minlength=resamples * count)
    return drawn.reshape(resamples, count)[:, group_of].astype(np.float64)


def whole_set(n: int) -> np.ndarray:
    """The (1, n) weights of the set itself: its point estimates."""
    return np.ones((1, n))


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = np.nan) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), empty)


def _roc_auc(labels: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC of every resample: the Mann-Whitney U / (n_pos n_neg) with ties counted 1/2,
    from the per-resample weighted counts of each class at each distinct score; NaN for a
    resample that lacks a class."""
    _, rank = np.unique(prob, return_inverse=True)
    rank = rank.ravel()
    levels, resamples = int(rank.max()) + 1, weights.shape[0]
    offset = np.arange(resamples)[:, None] * levels

    def counts(cls: int) -> np.ndarray:
        films = labels == cls
        return np.bincount((offset + rank[films]).ravel(), weights=weights[:, films].ravel(),
                           minlength=resamples * levels).reshape(-1, levels)

    pos, neg = counts(names.PNEUMONIA), counts(names.NORMAL)
    below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower, per level
    u = (pos * (below + 0.5 * neg)).sum(axis=1)
    return _ratio(u, pos.sum(axis=1) * neg.sum(axis=1))


def _ece(labels: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ECE (metrics.calibration_metrics) of every resample from weighted per-bin sums."""
    bins = metrics.ECE_BINS
    cell = np.arange(weights.shape[0])[:, None] * bins + metrics.calibration_bin(prob)[None, :]
    gap = np.bincount(cell.ravel(), weights=(weights * (labels - prob)).ravel(),
                      minlength=weights.shape[0] * bins).reshape(-1, bins)
    return np.abs(gap).sum(axis=1) / weights.sum(axis=1)


def _mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted mean of per-film ``values`` in every resample."""
    return weights @ np.asarray(values, np.float64) / weights.sum(axis=1)


DECIDED = "decided_pneumonia"  # a set's per-film classes decided out of sample, if it has them


def _at_threshold(labels: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> dict:
    """The metrics of metrics.classification_metrics that depend on the predicted classes."""
    y, p = labels == names.PNEUMONIA, np.asarray(pred, bool)
    count = lambda films: weights @ films.astype(np.float64)
    tp, tn, fp, fn = count(y & p), count(~y & ~p), count(~y & p), count(y & ~p)
    recall_p, recall_n = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    both = (tp + fn > 0) & (tn + fp > 0)
    return {"accuracy": (tp + tn) / weights.sum(axis=1),
            "balanced_accuracy": np.where(both, (recall_p + recall_n) / 2, np.nan),
            "f1_normal": _ratio(2 * tn, 2 * tn + fn + fp, empty=1.0),
            "f1_pneumonia": _ratio(2 * tp, 2 * tp + fp + fn, empty=1.0),
            "precision_pneumonia": _ratio(tp, tp + fp),
            "recall_pneumonia": recall_p}


def classification_replicates(arrays: Mapping[str, np.ndarray], threshold: float,
                              weights: np.ndarray) -> dict[str, np.ndarray]:
    """metric -> (R,) values over the resamples ``weights`` (:func:`resample_weights`) of a
    classification set's per-film ``label`` and ``prob_pneumonia`` (and
    ``prob_pneumonia_uncalibrated`` where a temperature made it differ): the metrics of
    metrics.classification_metrics and metrics.calibration_metrics. Where the films carry
    their own ``decided_pneumonia`` (cross-fitted decisions, evaluate's validation sets)
    those classes are resampled instead of ``prob_pneumonia >= threshold``."""
    labels = np.asarray(arrays["label"], np.int64)
    prob = np.asarray(arrays["prob_pneumonia"], np.float64)
    classes = (np.asarray(arrays[DECIDED], bool) if DECIDED in arrays else prob >= threshold)
    out = _at_threshold(labels, classes, weights)
    out["accuracy_at_0.5"] = _at_threshold(labels, prob >= names.DEFAULT_THRESHOLD,
                                           weights)["accuracy"]
    out["roc_auc"] = _roc_auc(labels, prob, weights)
    out["ece"] = _ece(labels, prob, weights)
    out["brier"] = _mean((prob - labels) ** 2, weights)
    raw = calibration.uncalibrated(arrays)
    if raw is not None:
        raw = np.asarray(raw, np.float64)
        out["ece_uncalibrated"] = _ece(labels, raw, weights)
        out["brier_uncalibrated"] = _mean((raw - labels) ** 2, weights)
    return out


def segmentation_replicates(arrays: Mapping[str, np.ndarray],
                            weights: np.ndarray) -> dict[str, np.ndarray]:
    """metric -> (R,) means over the resamples ``weights`` of a segmentation set's per-film
    metrics (metrics.per_image_segmentation)."""
    return {k: _mean(arrays[k], weights) for k in SEG_ARRAYS if k in arrays}


def replicates(task: str, arrays: Mapping[str, np.ndarray], threshold: float,
               weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of one set over the resamples ``weights``."""
    if task == names.CLASSIFICATION:
        return classification_replicates(arrays, threshold, weights)
    return segmentation_replicates(arrays, weights)


def film_count(task: str, arrays: Mapping[str, np.ndarray]) -> int:
    return len(arrays["label" if task == names.CLASSIFICATION else "dice"])


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
    (``sets.NAME.ci`` in results.json), whole patients resampled where the films carry their
    ``group``; {} for an empty set."""
    n = film_count(task, arrays)
    if n == 0:
        return {}
    weights = resample_weights(n, arrays.get(GROUP), resamples, seed)
    return {k: percentile_interval(v)
            for k, v in replicates(task, arrays, threshold, weights).items()}


def paired_difference(task: str, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray],
                      threshold_a: float = 0.5, threshold_b: float = 0.5,
                      resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, dict]:
    """metric -> {"a", "b", "difference" (b - a), "ci" (its 95% interval), "excludes_zero"}
    for two models' per-film arrays on the SAME films in the same order (compare.py aligns
    them by key): both are resampled with the same weights (whole patients where ``a``
    carries their ``group``), so the interval is of the paired difference."""
    n = film_count(task, a)
    weights = resample_weights(n, a.get(GROUP), resamples, seed)
    point_a, point_b = (replicates(task, x, t, whole_set(n))
                        for x, t in ((a, threshold_a), (b, threshold_b)))
    reps_a = replicates(task, a, threshold_a, weights)
    reps_b = replicates(task, b, threshold_b, weights)
    out = {}
    for key in reps_a.keys() & reps_b.keys():
        lo, hi = percentile_interval(reps_b[key] - reps_a[key])
        out[key] = {"a": float(point_a[key][0]), "b": float(point_b[key][0]),
                    "difference": float(point_b[key][0] - point_a[key][0]), "ci": [lo, hi],
                    "excludes_zero": bool(lo > 0 or hi < 0)}
    return {key: out[key] for key in reps_a if key in out}


def per_film(task: str, predictions: Mapping[str, np.ndarray], keys: Sequence[str],
             groups: Sequence[str]) -> dict[str, np.ndarray]:
    """The per-film arrays of one set's predictions that its intervals (and a later paired
    comparison, from predictions.npz) resample: label and probabilities, or each film's
    segmentation metrics (masks thresholded at 0.5); with each film's ``key`` (its name in the
    set, what compare.py pairs films by) and ``group`` (its patient, what is resampled)."""
    if task == names.CLASSIFICATION:
        films = {k: np.asarray(predictions[k]) for k in CLS_ARRAYS
                 if predictions.get(k) is not None}
    else:
        films = metrics.per_image_segmentation(metrics.binarize(predictions["mask_prob"]),
                                               predictions["mask"] > 0)
    return {**films, KEY: np.asarray(keys, str), GROUP: np.asarray(groups, str)}
