"""multimix_jax.intervals: every bootstrap replicate equals the metric functions applied to the
resampled films, intervals are reproducible and fast, paired differences of a model with
itself are exactly zero."""

import json
import math
import time

import numpy as np
import pytest

from multimix_jax import intervals, metrics, names


def _cls_arrays(n, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    prob = np.clip(0.3 * labels + rng.uniform(0, 0.7, n), 0, 1).round(2)  # many ties
    return {"label": labels, "prob_pneumonia": prob,
            "prob_pneumonia_uncalibrated": np.sqrt(prob)}


def test_each_replicate_is_the_metric_of_its_resample():
    arrays = _cls_arrays(40)
    idx = intervals.resample_indices(40, resamples=25, seed=3)
    reps = intervals.classification_replicates(arrays, 0.45, idx)
    for r in range(25):
        labels, prob = arrays["label"][idx[r]], arrays["prob_pneumonia"][idx[r]]
        want = {**metrics.classification_metrics(labels, prob, 0.45),
                **metrics.calibration_metrics(labels, prob)}
        raw = metrics.calibration_metrics(labels, arrays["prob_pneumonia_uncalibrated"][idx[r]])
        want["ece_uncalibrated"], want["brier_uncalibrated"] = raw["ece"], raw["brier"]
        for key, values in reps.items():
            assert values[r] == pytest.approx(want[key], nan_ok=True), (key, r)


def test_a_resample_with_one_class_has_no_auc_or_balanced_accuracy():
    arrays = {"label": np.array([0, 1]), "prob_pneumonia": np.array([0.2, 0.7])}
    idx = np.array([[0, 0], [1, 1], [0, 1]])
    reps = intervals.classification_replicates(arrays, 0.5, idx)
    assert np.isnan(reps["roc_auc"][:2]).all() and reps["roc_auc"][2] == 1.0
    assert np.isnan(reps["balanced_accuracy"][:2]).all()
    assert list(reps["f1_normal"]) == [1.0, 1.0, 1.0]  # a class absent from labels and predictions scores 1
    assert intervals.set_intervals(names.CLASSIFICATION, arrays)["roc_auc"] == [1.0, 1.0]


def test_segmentation_replicates_are_means_of_the_per_film_metrics():
    rng = np.random.default_rng(1)
    arrays = {k: rng.uniform(0, 1, 30) for k in intervals.SEG_ARRAYS}
    idx = intervals.resample_indices(30, resamples=5)
    reps = intervals.segmentation_replicates(arrays, idx)
    np.testing.assert_allclose(reps["hd95"], arrays["hd95"][idx].mean(1))
    ci = intervals.set_intervals(names.SEGMENTATION, arrays)
    assert ci["dice"][0] < arrays["dice"].mean() < ci["dice"][1]


def test_intervals_of_624_films_take_seconds_and_are_reproducible():
    arrays = _cls_arrays(624, seed=5)
    start = time.perf_counter()
    ci = intervals.set_intervals(names.CLASSIFICATION, arrays, threshold=0.5)
    assert time.perf_counter() - start < 10
    assert ci == intervals.set_intervals(names.CLASSIFICATION, arrays, threshold=0.5)
    point = metrics.classification_metrics(arrays["label"], arrays["prob_pneumonia"], 0.5)
    for key in ("accuracy", "balanced_accuracy", "f1_normal", "f1_pneumonia", "roc_auc"):
        lo, hi = ci[key]
        assert lo <= point[key] <= hi and 0 < hi - lo < 0.2, key
    small = intervals.set_intervals(names.CLASSIFICATION, _cls_arrays(60, seed=5))
    assert np.diff(small["accuracy"]) > np.diff(ci["accuracy"])  # fewer films, wider


def test_paired_difference():
    a = _cls_arrays(200, seed=2)
    same = intervals.paired_difference(names.CLASSIFICATION, a, a, 0.5, 0.5)
    assert same["accuracy"] == {"a": same["accuracy"]["a"], "b": same["accuracy"]["a"],
                                "difference": 0.0, "ci": [0.0, 0.0], "excludes_zero": False}
    better = {"label": a["label"], "prob_pneumonia": np.where(a["label"] == 1, 0.9, 0.1)}
    diff = intervals.paired_difference(names.CLASSIFICATION, a, better, 0.5, 0.5)
    assert diff["accuracy"]["difference"] > 0 and diff["accuracy"]["excludes_zero"]
    assert diff["accuracy"]["ci"][0] > 0 and diff["roc_auc"]["b"] == 1.0
    assert "ece_uncalibrated" not in diff  # only in a
    assert math.isclose(diff["accuracy"]["a"],
                        metrics.classification_metrics(a["label"], a["prob_pneumonia"])["accuracy"])


def _evaluation(folder, prob, labels, threshold=0.5, dice=None):
    """A results.json + predictions.npz as --mode evaluate writes them."""
    from multimix_jax import evaluate
    folder.mkdir()
    films = {"test_cls": {"label": labels, "prob_pneumonia": prob}}
    if dice is not None:
        films["test_seg"] = {k: dice for k in intervals.SEG_ARRAYS}
    evaluate.write_predictions(folder / "predictions.npz", films)
    sets = {"test_cls": {"threshold": threshold}}
    (folder / "results.json").write_text(json.dumps({"sets": sets, "predictions": "predictions.npz"}))
    return folder / "results.json"


def test_compare_script(tmp_path, capsys):
    from multimix_jax import compare
    from scripts import compare as script
    labels = np.tile([0, 1], 50)
    a = _evaluation(tmp_path / "a", np.full(100, 0.6), labels, dice=np.linspace(0.5, 0.9, 100))
    b = _evaluation(tmp_path / "b", np.where(labels == 1, 0.8, 0.3), labels)
    script.main([str(a), str(tmp_path / "b"), "--json", str(tmp_path / "c.json")])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| test_cls | accuracy |"))
    assert row.startswith("| test_cls | accuracy | 0.500 | 1.000 | 0.500 | [0.") and row.endswith("| yes |")
    assert "test_seg" not in out  # only in A
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["sets"]["test_cls"]["roc_auc"]["excludes_zero"]
    with pytest.raises(compare.UserError, match="labels differ"):
        compare.compare(a, _evaluation(tmp_path / "d", np.full(100, 0.6), 1 - labels))
    (tmp_path / "a" / "predictions.npz").unlink()
    with pytest.raises(SystemExit, match="error: .*predictions.npz: missing"):
        script.main([str(a), str(b)])
