"""Validation in one place (docs/multimix.md, Shifted validation; Decision threshold and
calibration): which sets, predicting them, the selection score, and the decision that
deployment applies to P(pneumonia) - an optional temperature, then a threshold.

``config.eval.threshold``: 'fixed' classifies at P(pneumonia) >= ``names.DEFAULT_THRESHOLD``
(the paper's argmax); 'fitted' at the balanced-accuracy threshold fitted on the pooled
classification validation (``val_cls``, plus ``val_cls_shifted`` with
``eval.shifted_validation``). ``config.eval.calibrate`` fits a temperature on the same pool
first (``calibration.py``); the threshold then refers to calibrated probabilities.

The rule stored for deployment is fitted on every pooled film. The figures the loop reports
and selects checkpoints on are out of sample: K-fold cross-fitting over the pooled films (the
rule fitted on K-1 folds classifies the held-out fold), with every film of a patient - and a
film's shifted copy - in one fold.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Callable, Mapping, Sequence

import numpy as np
from sklearn import model_selection

from multimix_jax import calibration, drift, evaluation, intervals, metrics, prior, shifts
from multimix_jax.sources import DataSplits, source_groups
from multimix_jax.names import (CLASSIFICATION, DEFAULT_THRESHOLD, SEGMENTATION, VAL_CLS,
                                VAL_CLS_SHIFTED, VAL_SEG, VAL_SEG_DISEASE, VAL_SEG_SHIFTED)


log = logging.getLogger("multimix_jax")

FOLDS = 5  # cross-fitting folds of the pooled validation films
FOLD_SEED = 0
# The classification figures that depend on the decision (the rest - ROC-AUC, accuracy at
# 0.5, n - do not: a temperature keeps the order and the side of 0.5 of every film).
DECISION_KEYS = ("accuracy", "balanced_accuracy", "f1_normal", "f1_pneumonia",
                 "precision_pneumonia", "recall_pneumonia")
SHIFTED_SCORE_PARTS = ((VAL_CLS, "balanced_accuracy"), (VAL_CLS_SHIFTED, "balanced_accuracy"),
                       (VAL_SEG, "dice"), (VAL_SEG_SHIFTED, "dice"), (VAL_SEG_DISEASE, "dice"))


# --------------------------------------------------------------------------- sets
def validation_sets(splits: DataSplits, shifted: bool = False) -> dict:
    """name -> (task, source) of the held-out validation splits (model selection only), each
    film with its patient group, with their shifted copies when ``shifted`` (docs/multimix.md,
    Shifted validation)."""
    sets = {}
    if splits.cls_val is not None:
        sets[VAL_CLS] = (CLASSIFICATION, splits.grouped("cls_val"))
    if splits.seg_val is not None:
        sets[VAL_SEG] = (SEGMENTATION, splits.grouped("seg_val"))
    if shifted:
        sets.update(shifts.shifted_sources(sets))
    return sets


def film_groups(sets: Mapping[str, tuple]) -> dict[str, np.ndarray]:
    """name -> one patient group per film of each classification set
    (``sources.source_groups``: one group per film where patients are unknown); a
    shifted copy's film is in the group of the film it was made from, so the two never fall
    in different folds."""
    return {name: source_groups(source) for name, (task, source) in sets.items()
            if task == CLASSIFICATION}


def predict_sets(predict_set: Callable, sets: Mapping[str, tuple]) -> dict[str, dict]:
    """name -> predictions of every set by ``predict_set`` (an ``evaluation.predictor``
    without a temperature: uncalibrated)."""
    return {name: predict_set(source) for name, (_, source) in sets.items()}


# --------------------------------------------------------------------------- the decision
@dataclasses.dataclass(frozen=True)
class Decision:
    """What deployment applies to the model's P(pneumonia): the ``temperature`` (None: none)
    and then the ``threshold`` (PNEUMONIA when the calibrated P >= threshold);
    ``encoded_prior`` is the class prior the calibrated P encodes on the films it was fitted on
    (``prior.encoded_prior``: --adapt_prior's base; None: undetermined) and
    ``score_crossing`` where their calibrated P divide (``drift.crossing``: --adapt_threshold's
    reference; None: undetermined)."""

    threshold: float = DEFAULT_THRESHOLD
    temperature: float | None = None
    encoded_prior: float | None = None
    score_crossing: float | None = None

    def probabilities(self, prob_uncalibrated) -> np.ndarray:
        return calibration.apply_temperature(prob_uncalibrated, self.temperature)

    def info(self, flip_tta: bool) -> dict:
        """The checkpoint's record of it, with the prediction setting it was fitted under."""
        return {"threshold": float(self.threshold), "temperature": self.temperature,
                "flip_tta": bool(flip_tta), prior.ENCODED_PRIOR_KEY: self.encoded_prior,
                drift.CROSSING_KEY: self.score_crossing}


def fit_decision(eval_config, labels, prob_uncalibrated) -> Decision:
    """The decision ``config.eval`` asks for, fitted on these films: a temperature when
    ``eval.calibrate``, then the threshold of ``eval.threshold`` on the calibrated P."""
    temperature = (calibration.fit_temperature(labels, prob_uncalibrated)
                   if eval_config.calibrate else None)
    probs = calibration.apply_temperature(prob_uncalibrated, temperature)
    threshold = (DEFAULT_THRESHOLD if eval_config.threshold == "fixed"  # THRESHOLD_RULES
                 else metrics.balanced_threshold(labels, probs))
    return Decision(threshold, temperature)


def site_references(labels, prob_calibrated) -> dict:
    """What a new site's adaptations compare it with, measured on films of known labels and
    their calibrated P: the prior P encodes (--adapt_prior's base) and where P divides them
    (--adapt_threshold's reference); the :class:`Decision` fields of those names."""
    return {"encoded_prior": prior.encoded_prior(labels, prob_calibrated),
            "score_crossing": drift.crossing(prob_calibrated)}


def deployed_decision(eval_config, labels, prob_uncalibrated) -> Decision:
    """:func:`fit_decision` with its :func:`site_references` on the same films: what a
    validated checkpoint records (the cross-fitting folds need the fit alone)."""
    decision = fit_decision(eval_config, labels, prob_uncalibrated)
    return dataclasses.replace(decision, **site_references(
        labels, decision.probabilities(prob_uncalibrated)))


def fits_anything(eval_config) -> bool:
    return bool(eval_config.calibrate) or eval_config.threshold != "fixed"


def folds(labels, groups, k: int = FOLDS, seed: int = FOLD_SEED) -> np.ndarray | None:
    """A fold index per film: ``k`` folds stratified by class, a group's films in one fold
    (fewer folds when a class has fewer than ``k`` groups; None below 2)."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    per_class = min(len(np.unique(groups[labels == c])) for c in np.unique(labels))
    k = min(k, per_class) if len(np.unique(labels)) == 2 else 0
    if k < 2:
        return None
    splitter = model_selection.StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    out = np.empty(len(labels), np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class" at small n
        for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels,
                                                            groups)):
            out[held_out] = fold
    return out


def cross_fitted(eval_config, labels, prob_uncalibrated, fold_of) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated P, threshold) per film, each from the decision fitted on the other folds."""
    labels, prob = np.asarray(labels), np.asarray(prob_uncalibrated, np.float64)
    calibrated, thresholds = np.empty_like(prob), np.empty_like(prob)
    for fold in np.unique(fold_of):
        held_out = fold_of == fold
        decision = fit_decision(eval_config, labels[~held_out], prob[~held_out])
        calibrated[held_out] = decision.probabilities(prob[held_out])
        thresholds[held_out] = decision.threshold
    return calibrated, thresholds


def held_out_decisions(eval_config, predictions: Mapping[str, dict],
                       groups: Mapping[str, np.ndarray], pool: Sequence[str]) -> dict:
    """name -> (labels, classes, number of folds) of each ``pool`` set, cross-fitted over the
    pooled films: the decision fitted on the other folds classifies each fold (classes: True for
    pneumonia). Empty when the rule fits nothing (the in-sample figures are then out of sample)
    or a class has too few films (groups) for two folds (logged)."""
    pool = [name for name in pool if name in predictions]
    if not pool or not fits_anything(eval_config):
        return {}
    take = lambda key: np.concatenate([np.asarray(predictions[n][key]) for n in pool])
    labels = take("label")
    fold_of = folds(labels, np.concatenate([groups[name] for name in pool]))
    if fold_of is None:
        log.warning("too few validation films of a class to cross-fit the decision: the "
                    "classification validation figures are in sample")
        return {}
    calibrated, thresholds = cross_fitted(eval_config, labels,
                                          take("prob_pneumonia_uncalibrated"), fold_of)
    ends = np.cumsum([0] + [len(predictions[name]["label"]) for name in pool])
    parts = {name: slice(ends[i], ends[i + 1]) for i, name in enumerate(pool)}
    return {name: (labels[part], calibrated[part] >= thresholds[part], int(fold_of.max() + 1))
            for name, part in parts.items()}


def _decided_figures(labels: np.ndarray, classes: np.ndarray, num_folds: int) -> dict:
    out = metrics.classification_metrics(labels, classes.astype(np.float64), DEFAULT_THRESHOLD)
    return {**{key: out[key] for key in DECISION_KEYS}, "cross_fitted_folds": num_folds}


def held_out_figures(eval_config, predictions: Mapping[str, dict],
                     groups: Mapping[str, np.ndarray], pool: Sequence[str]) -> dict:
    """name -> the ``DECISION_KEYS`` of each ``pool`` set (and ``cross_fitted_folds``) at
    its cross-fitted decisions (:func:`held_out_decisions`)."""
    return {name: _decided_figures(*decided) for name, decided in
            held_out_decisions(eval_config, predictions, groups, pool).items()}


def classify(eval_config, predictions: Mapping[str, dict], groups: Mapping[str, np.ndarray],
             pool: Sequence[str]) -> tuple[dict, Decision]:
    """(name -> metrics, the deployed decision) of classification sets: the decision is fitted
    on the films of the ``pool`` sets together; each pooled set is reported out of sample
    (:func:`held_out_figures`; the ROC-AUC and accuracy at 0.5 need no fit), any other set at
    the deployed decision."""
    pooled = [name for name in pool if name in predictions]
    if not pooled:
        return {}, Decision()
    take = lambda key: np.concatenate([np.asarray(predictions[n][key]) for n in pooled])
    decision = deployed_decision(eval_config, take("label"), take("prob_pneumonia_uncalibrated"))
    results = {name: metrics.classification_metrics(
        values["label"], decision.probabilities(values["prob_pneumonia_uncalibrated"]),
        decision.threshold) for name, values in predictions.items()}
    for name, figures in held_out_figures(eval_config, predictions, groups, pooled).items():
        results[name].update(figures)
    return results, decision


def score_sets(eval_config, sets: Mapping[str, tuple], predictions: Mapping[str, dict],
               pool: Sequence[str] | None = None) -> tuple[dict, Decision]:
    """(name -> metrics, deployed decision) of every validation set: segmentation sets at 0.5,
    classification sets by :func:`classify` with the decision fitted on ``pool`` (default:
    every classification set, i.e. ``val_cls`` and, with shifted validation, its copy)."""
    cls = {n: predictions[n] for n, (task, _) in sets.items() if task == CLASSIFICATION}
    results, decision = classify(eval_config, cls, film_groups(sets),
                                 list(cls) if pool is None else pool)
    for name, (task, _) in sets.items():
        if task == SEGMENTATION:
            results[name] = evaluation.set_metrics(SEGMENTATION, predictions[name])
    return {name: results[name] for name in sets}, decision


def held_out_of_sets(eval_config, sets: Mapping[str, tuple],
                     predictions: Mapping[str, dict]) -> dict:
    """:func:`held_out_figures` of the classification validation ``sets`` pooled, as the loop
    reports them, each with its films' cross-fitted classes (``intervals.DECIDED``); evaluate
    overrides its in-sample figures of these sets with them and resamples those classes."""
    cls = [n for n, (task, _) in sets.items() if task == CLASSIFICATION and n in predictions]
    return {name: {**_decided_figures(labels, classes, num_folds), intervals.DECIDED: classes}
            for name, (labels, classes, num_folds) in held_out_decisions(
                eval_config, predictions, film_groups(sets), cls).items()}


def site_references_of_sets(predict_set: Callable, sets: Mapping[str, tuple]) -> dict:
    """:func:`site_references` of the classification validation ``sets`` pooled, predicted by
    ``predict_set`` (calibrated by the stored temperature): what training records, for a
    checkpoint validated before it recorded them (values None without such sets)."""
    pooled = [predict_set(source) for task, source in sets.values() if task == CLASSIFICATION]
    if not pooled:
        return {"encoded_prior": None, "score_crossing": None}
    measured = site_references(np.concatenate([p["label"] for p in pooled]),
                               np.concatenate([p["prob_pneumonia"] for p in pooled]))
    log.info("site references %s, measured on the validation films (the checkpoint predates "
             "their record)", measured)
    return measured


def validate(eval_config, predict_set: Callable,
             sets: Mapping[str, tuple]) -> tuple[dict, Decision]:
    """Predicts every validation set once by ``predict_set`` (:func:`predict_sets`);
    (name -> metrics, deployed decision of ``config.eval``)."""
    return score_sets(eval_config, sets, predict_sets(predict_set, sets))


# --------------------------------------------------------------------------- selection
def selection_score(results: Mapping[str, dict], criterion: str) -> float:
    """The model-selection criterion (higher is better): 'val_score' = mean of val accuracy
    and val Dice (those available); 'shifted_score' = mean of the balanced accuracies and
    Dice scores of the hold-outs and their shifted copies (those available; docs/multimix.md,
    Shifted validation); or 'SET/METRIC' such as 'val_cls/accuracy'."""
    if criterion in ("val_score", "shifted_score"):
        parts = SHIFTED_SCORE_PARTS if criterion == "shifted_score" else (
            (VAL_CLS, "accuracy"), (VAL_SEG, "dice"))
        return float(np.mean([results[name][key] for name, key in parts if name in results]))
    name, key = criterion.split("/")
    return float(results[name][key])
