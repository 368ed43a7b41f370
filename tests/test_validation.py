"""validation: one decision rule for selection and deployment, reported out of sample
(cross-fitted, a patient's films and a film's shifted copy in one fold), stored with the
checkpoint under one name, and refused under another prediction function; inference restores
the parameters alone after checking the recorded config."""

import importlib.util
import json

import ml_collections
import numpy as np
import pytest

from multimix_jax import (calibration, checkpointing, drift, evaluate, evaluation, intervals,
                          metrics, names, prior, sharding, shifts, sources, steps, train,
                          validation)
from multimix_jax import state as train_state
from multimix_jax.config_base import base_config
from multimix_jax.errors import ConfigMismatchError, UserError
from tests import fake_model
from tests.conftest import REPO, tiny_train_config


def _eval(threshold="fitted", calibrate=False):
    return ml_collections.ConfigDict({"threshold": threshold, "calibrate": calibrate})


def _noise(n=200, seed=0):
    """Scores that carry no information: any fitted threshold only fits the noise."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, n), rng.random(n)


def _informative(n=300, seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return labels, np.clip(0.15 + 0.4 * labels + 0.5 * rng.random(n), 0, 1)


# --------------------------------------------------------------------------- folds
def test_folds_are_stratified_seeded_and_keep_a_group_together():
    labels = np.repeat([0, 1], 30)
    groups = np.arange(60) // 3  # 20 patients of 3 films, each of one class
    fold_of = validation.folds(labels, groups)
    assert set(fold_of) == set(range(validation.FOLDS))
    for g in np.unique(groups):
        assert len(set(fold_of[groups == g])) == 1
    for f in range(validation.FOLDS):
        assert 0 < labels[fold_of == f].sum() < (fold_of == f).sum()  # both classes
    np.testing.assert_array_equal(fold_of, validation.folds(labels, groups))
    # too few groups of a class: fewer folds, and none when cross-fitting is impossible
    assert validation.folds([0, 0, 1, 1, 1], ["a", "b", "c", "d", "e"]).max() == 1
    assert validation.folds([0, 1, 1], ["a", "b", "c"]) is None


def test_a_shifted_copy_takes_the_group_of_its_film():
    labels = np.array([0, 1, 1, 1, 0, 1])
    base = sources.ArraySource({"image": np.zeros((6, 8, 8), np.uint8), "label": labels})
    copy = shifts.ShiftedSource(base, "acquisition", 0, shifts.balanced_indices(labels, 0))
    sets = {names.VAL_CLS: (names.CLASSIFICATION, base),
            names.VAL_CLS_SHIFTED: (names.CLASSIFICATION, copy)}
    groups = validation.film_groups(sets)
    assert len(set(groups[names.VAL_CLS])) == 6  # no patient ids: one group per film
    np.testing.assert_array_equal(groups[names.VAL_CLS_SHIFTED],
                                  groups[names.VAL_CLS][copy.indices])
    base.groups = np.array(["p1", "p1", "p2", "p3", "p3", "p4"])  # patient ids when known
    np.testing.assert_array_equal(validation.film_groups(sets)[names.VAL_CLS_SHIFTED],
                                  base.groups[copy.indices])


def test_the_validation_sets_carry_patients_into_the_folds():
    """A patient's films, and their shifted copies, fall in one cross-fitting fold: the
    groups come from the split's patient rule, not from the film."""
    keys = [f"PNEUMONIA/person{p}_bacteria_{f}.jpeg" for p in range(6) for f in range(2)]
    keys += [f"NORMAL/IM-{p:04d}-000{f}.jpeg" for p in range(6) for f in range(2)]
    labels = np.array([1] * 12 + [0] * 12)
    val = sources.ArraySource({"image": np.zeros((24, 8, 8), np.uint8), "label": labels},
                                     keys=keys)
    splits = sources.DataSplits(cls_val=val, grouping={"cls": "auto"})
    sets = validation.validation_sets(splits, shifted=True)
    groups = validation.film_groups(sets)
    assert len(set(groups[names.VAL_CLS])) == 12  # 24 films of 12 patients
    copy = sets[names.VAL_CLS_SHIFTED][1]
    pooled_groups = np.concatenate([groups[names.VAL_CLS], groups[names.VAL_CLS_SHIFTED]])
    fold_of = validation.folds(np.concatenate([labels, labels[copy.indices]]), pooled_groups)
    for patient in set(pooled_groups):
        assert len(set(fold_of[pooled_groups == patient])) == 1, patient


# --------------------------------------------------------------------------- the decision
def _predictions(labels, probs):
    return {"label": np.asarray(labels), "prob_pneumonia": np.asarray(probs),
            "prob_pneumonia_uncalibrated": np.asarray(probs)}


def test_fitted_rule_reports_out_of_sample_figures_and_deploys_the_fit_on_all_films():
    labels, probs = _noise()
    groups = {"val_cls": np.arange(len(labels))}
    results, decision = validation.classify(_eval(), {"val_cls": _predictions(labels, probs)},
                                            groups, ["val_cls"])
    assert decision.threshold == metrics.balanced_threshold(labels, probs)
    assert decision.temperature is None
    in_sample = metrics.classification_metrics(labels, probs, decision.threshold)
    out = results["val_cls"]
    # on noise the in-sample fit is optimistic; held-out folds are not
    assert in_sample["balanced_accuracy"] > 0.55
    assert out["balanced_accuracy"] < in_sample["balanced_accuracy"] - 0.03
    assert out["threshold"] == decision.threshold and out["cross_fitted_folds"] == 5
    assert out["roc_auc"] == in_sample["roc_auc"]  # threshold-free figures need no fit
    # the held-out figures are those of the rule fitted on the other folds
    fold_of = validation.folds(labels, groups["val_cls"])
    decided = np.empty(len(labels), bool)
    for f in range(5):
        t = metrics.balanced_threshold(labels[fold_of != f], probs[fold_of != f])
        decided[fold_of == f] = probs[fold_of == f] >= t
    assert out["accuracy"] == pytest.approx(np.mean(decided == labels))


def test_cross_fitted_figures_get_the_interval_of_their_own_decisions():
    labels, probs = _noise()
    source = sources.ArraySource({"image": np.zeros((len(labels), 4, 4), np.uint8),
                                         "label": labels})
    sets = {"val_cls": ("classification", source)}
    preds = {"val_cls": _predictions(labels, probs)}
    out = validation.held_out_of_sets(_eval(), sets, preds)["val_cls"]
    classes = out[intervals.DECIDED]
    assert out["accuracy"] == pytest.approx(np.mean(classes == (labels == 1)))
    ci = intervals.set_intervals("classification", {**preds["val_cls"], intervals.DECIDED: classes},
                                 0.5)
    lo, hi = ci["balanced_accuracy"]
    assert lo <= out["balanced_accuracy"] <= hi
    # the interval of the in-sample fit sits above it, on noise: not the one to report
    in_sample = intervals.set_intervals("classification", preds["val_cls"],
                                        metrics.balanced_threshold(labels, probs))
    assert in_sample["balanced_accuracy"][0] > lo + 0.02


def test_the_fixed_rule_is_the_default_and_classifies_at_the_default_threshold():
    eval_config = base_config().eval
    assert eval_config.threshold == "fixed" and not eval_config.calibrate
    labels, probs = _informative()
    probs = probs * 0.8  # a fit would move the threshold away from 0.5
    assert metrics.balanced_threshold(labels, probs) != names.DEFAULT_THRESHOLD
    results, decision = validation.classify(eval_config, {"val_cls": _predictions(labels, probs)},
                                            {"val_cls": np.arange(len(labels))}, ["val_cls"])
    assert (decision.threshold, decision.temperature) == (names.DEFAULT_THRESHOLD, None)
    assert results["val_cls"] == metrics.classification_metrics(labels, probs, 0.5)


def test_calibrated_decision_refers_to_calibrated_probabilities():
    labels, probs = _informative()
    probs = calibration.apply_temperature(probs, 1 / 3.0)  # over-confident
    results, decision = validation.classify(_eval(calibrate=True),
                                            {"val_cls": _predictions(labels, probs)},
                                            {"val_cls": np.arange(len(labels))}, ["val_cls"])
    assert decision.temperature == pytest.approx(calibration.fit_temperature(labels, probs))
    calibrated = calibration.apply_temperature(probs, decision.temperature)
    assert decision.threshold == metrics.balanced_threshold(labels, calibrated)
    assert results["val_cls"]["threshold"] == decision.threshold
    assert decision.info(flip_tta=False) == {"threshold": decision.threshold,
                                             "temperature": decision.temperature,
                                             "flip_tta": False,
                                             prior.ENCODED_PRIOR_KEY: prior.encoded_prior(
                                                 labels, calibrated),
                                             drift.CROSSING_KEY: drift.crossing(calibrated)}


def test_a_set_outside_the_pool_is_scored_at_the_deployed_decision():
    labels, probs = _informative()
    other = _predictions(labels[:50], probs[:50])
    results, decision = validation.classify(
        _eval(), {"val_cls": _predictions(labels, probs), "val_cls_shifted": other},
        {"val_cls": np.arange(300), "val_cls_shifted": np.arange(50)}, ["val_cls"])
    assert "cross_fitted_folds" not in results["val_cls_shifted"]
    assert results["val_cls_shifted"] == metrics.classification_metrics(
        labels[:50], probs[:50], decision.threshold)


def test_shifted_report_reports_each_rule_with_the_validation_rules(monkeypatch):
    spec = importlib.util.spec_from_file_location("shifted_report",
                                                  REPO / "scripts" / "shifted_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    fake_model.install(monkeypatch)
    config = tiny_train_config()
    config.data.cls.num_examples, config.data.val_cls = 60, 20
    out = report.report(config, "run", "best")
    sets = validation.validation_sets(sources.make_splits(config), shifted=True)
    preds = validation.predict_sets(evaluation.predictor(
        fake_model.FakeModel().predict_fn, None, config.data, sharding.make_mesh()), sets)
    pooled = [names.VAL_CLS, names.VAL_CLS_SHIFTED]
    take = lambda key: np.concatenate([preds[n][key] for n in pooled])
    res = out["plain"]
    assert res["thresholds"]["0.5"] == names.DEFAULT_THRESHOLD
    assert res["thresholds"]["fit_on_val"] == metrics.balanced_threshold(
        preds[names.VAL_CLS]["label"], preds[names.VAL_CLS]["prob_pneumonia"])
    assert res["thresholds"]["fit_pooled"] == metrics.balanced_threshold(
        take("label"), take("prob_pneumonia"))
    # a set a rule was fitted on is reported out of sample; the other one is not pooled
    assert "cross_fitted_folds" in res["val_cls_shifted@fit_pooled"]
    assert "cross_fitted_folds" not in res["val_cls_shifted@fit_on_val"]
    assert "cross_fitted_folds" not in res["val_cls@0.5"]
    assert len(report.markdown_rows(out)) == 6


# --------------------------------------------------------------------------- end to end
def _no_optimizer(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("inference built training state")
    for name in ("make_optimizer", "initial_model", "create_train_state", "setup"):
        monkeypatch.setattr(train_state, name, refuse)


@pytest.mark.slow  # trains and compiles: a minute on 2 idle cores
def test_the_fitted_calibrated_decision_travels_from_the_fit_to_evaluate(tmp_path, monkeypatch):
    config = tiny_train_config(num_steps=2)
    config.data.cls.num_examples, config.data.val_cls = 60, 20
    config.eval.threshold, config.eval.calibrate = "fitted", True
    out = train.train_and_evaluate(config, tmp_path)
    reader = checkpointing.Checkpointer(tmp_path, read_only=True)
    info = reader.info(out["best"]["step"])
    reader.close()
    assert set(info) == {"val_score", "threshold", "temperature", "flip_tta", "val",
                         prior.ENCODED_PRIOR_KEY, drift.CROSSING_KEY}
    assert info["flip_tta"] is False and info["temperature"] is not None

    _no_optimizer(monkeypatch)  # inference restores the parameters alone
    loaded = evaluation.load_for_inference(config, tmp_path)
    assert (loaded.threshold, loaded.temperature) == (info["threshold"], info["temperature"])
    # the stored decision is the one fitted on every validation film
    sets = validation.validation_sets(sources.make_splits(config))
    predict_fn = steps.jit_predict(loaded.model, loaded.mesh)
    preds = validation.predict_sets(
        evaluation.predictor(predict_fn, loaded.params, config.data, loaded.mesh), sets)
    refit = validation.fit_decision(config.eval, preds["val_cls"]["label"],
                                    preds["val_cls"]["prob_pneumonia_uncalibrated"])
    assert refit.threshold == pytest.approx(info["threshold"], abs=1e-6)
    assert refit.temperature == pytest.approx(info["temperature"], rel=1e-3)

    evaluate.evaluate(config, tmp_path, output_dir=tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["threshold"] == info["threshold"] and saved["temperature"] == info["temperature"]
    assert "calibrated by the temperature" in (tmp_path / "out" / "results.md").read_text()
    # evaluate reports the validation set out of sample too: the loop's figures
    for key in validation.DECISION_KEYS + ("cross_fitted_folds", "threshold"):
        assert saved["sets"]["val_cls"][key] == pytest.approx(info["val"]["val_cls"][key],
                                                              nan_ok=True), key
    # ... with the intervals of those out-of-sample decisions, which predictions.npz keeps
    with np.load(tmp_path / "out" / "predictions.npz") as films:
        decided = films["val_cls/" + intervals.DECIDED]
        labels = films["val_cls/label"]
    assert saved["sets"]["val_cls"]["accuracy"] == pytest.approx(np.mean(decided == (labels == 1)))

    tta = config.copy_and_resolve_references()
    tta.eval.flip_tta = True
    with pytest.raises(ConfigMismatchError, match=r"eval\.flip_tta"):
        evaluation.load_for_inference(tta, tmp_path)
    wider = config.copy_and_resolve_references()
    wider.model.widths = (8, 8, 8, 16, 16)
    with pytest.raises(ConfigMismatchError, match="model.widths"):
        evaluate.evaluate(wider, tmp_path)  # every entry point checks the recorded config
