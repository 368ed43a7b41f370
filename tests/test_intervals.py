"""multimix_jax.intervals: every bootstrap replicate equals the metric functions applied to the
resampled films, a patient's films are drawn together, intervals are reproducible and fast,
paired differences of a model with itself are exactly zero, and compare.py pairs films by
name."""

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


def _films_of(weights_row):
    """The film indices of one resample (film i repeated as often as it was drawn)."""
    return np.repeat(np.arange(len(weights_row)), weights_row.astype(np.int64))


@pytest.mark.parametrize("patients", [None, "pairs"])
def test_each_replicate_is_the_metric_of_its_resample(patients):
    arrays = _cls_arrays(40)
    groups = None if patients is None else np.arange(40) // 2
    weights = intervals.resample_weights(40, groups, resamples=25, seed=3)
    reps = intervals.classification_replicates(arrays, 0.45, weights)
    for r in range(25):
        films = _films_of(weights[r])
        labels, prob = arrays["label"][films], arrays["prob_pneumonia"][films]
        want = {**metrics.classification_metrics(labels, prob, 0.45),
                **metrics.calibration_metrics(labels, prob)}
        raw = metrics.calibration_metrics(labels, arrays["prob_pneumonia_uncalibrated"][films])
        want["ece_uncalibrated"], want["brier_uncalibrated"] = raw["ece"], raw["brier"]
        for key, values in reps.items():
            assert values[r] == pytest.approx(want[key], nan_ok=True), (key, r)


def test_a_patient_is_drawn_with_all_of_its_films():
    groups = np.array(["p1", "p1", "p2", "p3", "p3", "p3", "p4"])
    weights = intervals.resample_weights(7, groups, resamples=200, seed=1)
    for patient in set(groups):
        films = weights[:, groups == patient]
        assert (films == films[:, :1]).all(), patient  # one count for the whole patient
    assert (weights[:, [0, 2, 3, 6]].sum(axis=1) == 4).all()  # 4 patients drawn per resample
    film_level = intervals.resample_weights(7, None, resamples=200, seed=1)
    assert (film_level.sum(axis=1) == 7).all()


def test_films_of_one_patient_widen_the_interval_to_that_of_the_patients():
    """Two identical films per patient carry the information of one: resampling patients
    gives the interval of the patients alone, resampling films a narrower, wrong one."""
    one_each = _cls_arrays(150, seed=4)
    twice = {k: np.repeat(v, 2) for k, v in one_each.items()}
    patients = {**twice, intervals.GROUP: np.repeat(np.arange(150), 2).astype(str)}
    width = lambda arrays: np.diff(
        intervals.set_intervals(names.CLASSIFICATION, arrays)["accuracy"])[0]
    assert width(patients) == pytest.approx(width(one_each), rel=0.15)
    assert width(twice) < 0.85 * width(patients)


def test_a_resample_with_one_class_has_no_auc_or_balanced_accuracy():
    arrays = {"label": np.array([0, 1]), "prob_pneumonia": np.array([0.2, 0.7])}
    weights = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    reps = intervals.classification_replicates(arrays, 0.5, weights)
    assert np.isnan(reps["roc_auc"][:2]).all() and reps["roc_auc"][2] == 1.0
    assert np.isnan(reps["balanced_accuracy"][:2]).all()
    assert list(reps["f1_normal"]) == [1.0, 1.0, 1.0]  # a class absent from labels and predictions scores 1
    assert intervals.set_intervals(names.CLASSIFICATION, arrays)["roc_auc"] == [1.0, 1.0]


def test_segmentation_replicates_are_means_of_the_per_film_metrics():
    rng = np.random.default_rng(1)
    arrays = {k: rng.uniform(0, 1, 30) for k in intervals.SEG_ARRAYS}
    weights = intervals.resample_weights(30, resamples=5)
    reps = intervals.segmentation_replicates(arrays, weights)
    np.testing.assert_allclose(reps["hd95"], [arrays["hd95"][_films_of(w)].mean() for w in weights])
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


def _evaluation(folder, prob, labels, threshold=0.5, dice=None, keys=None):
    """A results.json + predictions.npz as --mode evaluate writes them."""
    from multimix_jax import evaluate
    folder.mkdir()
    keys = np.asarray([f"film{i:03d}.png" for i in range(len(labels))] if keys is None else keys)
    named = {intervals.KEY: keys, intervals.GROUP: keys}
    films = {"test_cls": {"label": labels, "prob_pneumonia": prob, **named}}
    if dice is not None:
        films["test_seg"] = {**{k: dice for k in intervals.SEG_ARRAYS}, **named}
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
    with pytest.raises(compare.UserError, match="different labels"):
        compare.compare(a, _evaluation(tmp_path / "d", np.full(100, 0.6), 1 - labels))
    (tmp_path / "a" / "predictions.npz").unlink()
    with pytest.raises(SystemExit, match="error: .*predictions.npz: missing"):
        script.main([str(a), str(b)])


def test_compare_over_seeds_calls_a_gain_only_when_it_outgrows_the_seed_spread(tmp_path, capsys):
    """Two seeds: B beats A by the same margin in both, far above the seeds' spread (holds);
    a second change helps one seed and hurts the other (does not hold, whatever one seed's
    interval says)."""
    from multimix_jax import compare
    from scripts import compare as script
    labels = np.tile([0, 1], 50)
    rng = np.random.default_rng(0)
    noisy = lambda shift: np.clip(np.where(labels == 1, 0.5 + shift, 0.5 - shift)
                                  + rng.normal(0, 0.2, 100), 0, 1)
    runs = {name: _evaluation(tmp_path / name, noisy(shift), labels) for name, shift in
            [("a0", 0.05), ("a1", 0.05), ("b0", 0.4), ("b1", 0.4), ("c0", 0.4), ("c1", 0.0)]}
    script.main([str(runs["a0"]), str(runs["b0"]), str(runs["a1"]), str(runs["b1"]),
                 "--json", str(tmp_path / "seeds.json")])
    row = json.loads((tmp_path / "seeds.json").read_text())["sets"]["test_cls"]["accuracy"]
    assert row["holds"] and all(d > row["seed_spread"] for d in row["per_seed"])
    assert len(row["per_seed"]) == 2 and all(row["per_seed_excludes_zero"])
    out = capsys.readouterr().out
    assert "| test_cls | accuracy |" in out and out.splitlines()[0].startswith("2 seeds (A = ")
    mixed = compare.compare_seeds([(runs["a0"], runs["c0"]), (runs["a1"], runs["c1"])])
    row = mixed["sets"]["test_cls"]["accuracy"]
    assert row["per_seed"][0] > 0 > row["per_seed"][1] and row["per_seed_excludes_zero"][0]
    assert not row["holds"]
    one_class = np.ones(100, int)  # seed 1's set has no normal film: its ROC-AUC is undefined
    undefined = compare.compare_seeds([
        (runs["a0"], runs["b0"]),
        (_evaluation(tmp_path / "d1", np.full(100, 0.6), one_class),
         _evaluation(tmp_path / "e1", np.full(100, 0.9), one_class))])["sets"]["test_cls"]
    assert math.isnan(undefined["roc_auc"]["seed_spread"]) and not undefined["roc_auc"]["holds"]
    with pytest.raises(compare.UserError, match="needs two or more"):
        compare.compare_seeds([(runs["a0"], runs["b0"])])
    with pytest.raises(SystemExit, match="3 results given"):
        script.main([str(runs["a0"]), str(runs["b0"]), str(runs["a1"])])


def test_compare_pairs_films_by_name_not_position(tmp_path):
    """B lists the same films in another order: each film meets itself, so a model compared
    with itself differs by exactly 0; other films or unnamed films are refused."""
    from multimix_jax import compare, evaluate
    rng = np.random.default_rng(0)
    labels, prob = rng.integers(0, 2, 80), rng.uniform(0, 1, 80)
    keys = np.asarray([f"film{i:03d}.png" for i in range(80)])
    order = rng.permutation(80)
    a = _evaluation(tmp_path / "a", prob, labels, keys=keys)
    b = _evaluation(tmp_path / "b", prob[order], labels[order], keys=keys[order])
    same = compare.compare(a, b)["sets"]["test_cls"]
    assert all(row["difference"] == 0 and row["ci"] == [0.0, 0.0] for row in same.values())
    other = _evaluation(tmp_path / "c", prob, labels, keys=np.char.add("x", keys))
    with pytest.raises(compare.UserError, match="80 only in A, 80 only in B"):
        compare.compare(a, other)
    evaluate.write_predictions(tmp_path / "c" / "predictions.npz",
                               {"test_cls": {"label": labels, "prob_pneumonia": prob}})
    with pytest.raises(compare.UserError, match="no film names"):
        compare.compare(a, tmp_path / "c")
