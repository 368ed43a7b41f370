"""evaluate and the evaluation module: each set predicted once, classification at the
checkpoint's decision threshold, tables that show the threshold and the HD-penalised masks
(tests/fake_model.py stands in for a checkpoint)."""

import json
import logging
import math

import numpy as np
import pytest

from multimix_jax import errors, evaluate, evaluation, metrics, names, sharding, sources, steps
from tests import fake_model
from tests.conftest import tiny_train_config

CLS_KEYS = {"accuracy", "f1_normal", "f1_pneumonia", "roc_auc", "balanced_accuracy",
            "accuracy_at_0.5", "threshold", "n"}


def test_evaluate_predicts_each_set_once_at_the_stored_threshold(tmp_path, monkeypatch):
    config = tiny_train_config()
    fake = fake_model.install(monkeypatch, threshold=1.01)  # above every P: all NORMAL
    results = evaluate.evaluate(config, tmp_path / "run", output_dir=tmp_path / "out")

    sizes = {"val_cls": 8, "val_seg": 4, "test_cls": 6, "test_seg": 5}
    assert {name: results[name]["n"] for name in sizes} == sizes
    batches = sum(math.ceil(n / config.data.eval_batch_size) for n in sizes.values())
    # no set is predicted twice (the example PNGs reuse it); the report's worst films (at
    # most one batch) once more per set, for their saliency
    assert fake.calls == batches + len(sizes)
    assert len(list((tmp_path / "out" / "examples").glob("*.png"))) == 4  # 2 per seg set

    labels = sources.eval_sources(config)["test_cls"][1]
    normal = np.mean([labels[i]["label"] == names.NORMAL for i in range(len(labels))])
    assert results["test_cls"]["accuracy"] == pytest.approx(normal)
    assert results["test_cls"]["recall_pneumonia"] == 0.0

    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["threshold"] == 1.01 and saved["step"] == 7 and "paper_row" in saved
    assert saved["temperature"] is None
    assert CLS_KEYS <= set(saved["sets"]["test_cls"]) and "dice" in saved["sets"]["test_seg"]
    assert saved["sets"]["test_cls"]["threshold"] == 1.01
    # intervals beside the points, the trivial rules, the training prior, per-film arrays
    test_cls = saved["sets"]["test_cls"]
    lo, hi = test_cls["ci"]["accuracy"]
    assert lo <= test_cls["accuracy"] <= hi and {"roc_auc", "ece", "brier"} <= set(test_cls["ci"])
    assert set(saved["sets"]["test_seg"]["ci"]) == {"dice", "jaccard", "hd", "hd95", "ssim"}
    prior = saved["labeled_prior"]
    assert prior["n"] == config.labels.cls and 0 <= prior["pneumonia_fraction"] <= 1
    rules = test_cls["trivial_rules"]
    assert set(rules) == {"all_pneumonia", "all_normal", "training_prior"}
    assert rules["all_normal"]["accuracy"] == pytest.approx(normal) == results["test_cls"]["accuracy"]
    assert rules["all_pneumonia"]["accuracy"] == pytest.approx(1 - normal)
    assert "ci" in rules["all_normal"] and "ece" in test_cls and "brier" in test_cls
    with np.load(tmp_path / "out" / "predictions.npz") as films:
        assert films["test_cls/label"].shape == (6,) and films["test_seg/hd95"].shape == (5,)
        assert np.mean(films["test_seg/dice"]) == pytest.approx(saved["sets"]["test_seg"]["dice"])
    assert (tmp_path / "out" / "report.html").stat().st_size > 0
    table = (tmp_path / "out" / "results.md").read_text()
    assert "P(pneumonia) >= 1.010" in table and "HD-penalised" in table


def test_run_predictions_keeps_the_first_saliency_maps_only(monkeypatch):
    images = np.arange(10, dtype=np.uint8)[:, None, None] * np.ones((1, 8, 8), np.uint8) * 20
    source = sources.ArraySource({"image": images})
    fake, mesh = fake_model.FakeModel(), sharding.make_mesh()
    out = evaluation.run_predictions(fake.predict_fn, None, source, 4, 8, mesh, saliency_count=5)
    assert out["mask_prob"].shape == (10, 8, 8) and out["saliency"].shape == (5, 8, 8)
    np.testing.assert_allclose(out["saliency"], images[:5] / 255.0)
    assert "saliency" not in evaluation.run_predictions(fake.predict_fn, None, source, 4, 8, mesh)


def test_stored_decision(caplog):
    info = {"val_score": 0.8, "threshold": 0.3, "temperature": 2.0, "flip_tta": False, "val": {}}
    assert evaluation.stored_decision(info, flip_tta=False) == (0.3, 2.0)
    with caplog.at_level(logging.INFO, logger="multimix_jax"):
        assert evaluation.stored_decision({"val_score": None, "threshold": 0.5}) == (0.5, None)
    assert caplog.text.count("holds no decision threshold") == 1


def test_a_threshold_fitted_under_another_flip_tta_is_refused():
    info = {"val_score": 0.8, "threshold": 0.3, "temperature": None, "flip_tta": False}
    with pytest.raises(errors.ConfigMismatchError, match=r"eval\.flip_tta=False") as error:
        evaluation.stored_decision(info, flip_tta=True)
    assert str(error.value).startswith("--config.eval.flip_tta=True")


def test_tables_show_the_threshold_and_the_empty_masks():
    results = {"test_cls": metrics.classification_metrics([0, 1, 1], [0.2, 0.35, 0.9], 0.3),
               "test_seg": {"n": 4, "dice": 0.5, "hd": 90.0, "hd95": 91.0, "ssim": 0.4,
                            "jaccard": 0.4, "empty_pred": 3, "hd_penalised": 2}}
    layout = {"in_cls": "test_cls", "in_seg": "test_seg"}
    lines = evaluation.markdown_tables(results, layout, "MultiMix", "10/5", 0.3).splitlines()
    # the column counts what the HD penalty counts (exactly one of the two masks empty), not
    # the empty predictions (an empty prediction of an empty true mask scores HD 0)
    assert lines[0].endswith("| x-DS | HD-penalised |") and lines[2].endswith("| 2 |")
    assert any("P(pneumonia) >= 0.300" in line for line in lines)
    header = [cell.strip() for cell in lines[6].strip("|").split("|")]
    seg = dict(zip(header, (cell.strip() for cell in lines[9].strip("|").split("|"))))
    cls = dict(zip(header, (cell.strip() for cell in lines[8].strip("|").split("|"))))
    assert seg["HD-penalised"] == "2" and seg["HD"] == "90.000"
    assert cls["accuracy"] == "1.000" and cls["acc@0.5"] == "0.667"


def test_tables_show_trivial_rules_calibration_and_intervals():
    labels, probs = [0, 1, 1, 1], [0.2, 0.35, 0.9, 0.6]
    cls = {**metrics.classification_metrics(labels, probs, 0.3),
           **metrics.calibration_metrics(labels, probs),
           "ci": {"accuracy": [0.5, 1.0], "ece": [0.1, 0.4]},
           "trivial_rules": metrics.trivial_rules(labels, prior=0.4)}
    lines = evaluation.markdown_tables({"test_cls": cls}, {"in_cls": "test_cls"}, "MultiMix",
                                       "10/-", 0.3).splitlines()
    header = [cell.strip() for cell in lines[6].strip("|").split("|")]
    assert {"ECE", "Brier", "ECE uncal.", "Brier uncal."} <= set(header)
    rows = {cells[0]: dict(zip(header, cells)) for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in lines[8:12])}
    assert rows["test_cls: all pneumonia"]["accuracy"] == "0.750"
    assert rows["test_cls: all normal"]["accuracy"] == "0.250"
    assert rows["test_cls: training prior"]["accuracy"] == "0.250"  # P = 0.4 < 0.5: all normal
    assert rows["test_cls"]["ECE"] == f"{cls['ece']:.3f}" and rows["test_cls"]["ECE uncal."] == "-"
    ci_header = next(i for i, line in enumerate(lines) if line.startswith("95% bootstrap"))
    assert lines[ci_header + 2] == "| set | accuracy | ECE |"
    assert lines[ci_header + 4] == "| test_cls | [0.500, 1.000] | [0.100, 0.400] |"


def test_calibration_before_and_after_when_the_predictions_carry_both():
    predictions = {"label": np.array([0, 0, 1, 1]), "prob_pneumonia": np.array([.1, .2, .8, .9]),
                   "prob_pneumonia_uncalibrated": np.array([.3, .4, .6, .7])}
    result = evaluation.set_metrics(names.CLASSIFICATION, predictions)
    assert result["ece"] == pytest.approx(0.15) and result["ece_uncalibrated"] == pytest.approx(0.35)
    assert result["brier"] < result["brier_uncalibrated"]
    del predictions["prob_pneumonia_uncalibrated"]
    assert "ece_uncalibrated" not in evaluation.set_metrics(names.CLASSIFICATION, predictions)
    # without a temperature the uncalibrated figures are the same ones: not repeated
    predictions["prob_pneumonia_uncalibrated"] = predictions["prob_pneumonia"].copy()
    assert "ece_uncalibrated" not in evaluation.set_metrics(names.CLASSIFICATION, predictions)


def test_collect_results_shows_the_intervals_and_the_mean_over_seeds(tmp_path):
    from scripts import collect_results
    for seed, accuracy in ((0, 0.8), (1, 0.6)):
        val = {"accuracy": accuracy, "ci": {"accuracy": [accuracy - 0.1, accuracy + 0.1]},
               "ece": 0.05}
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "results.json").write_text(json.dumps(
            {"model": "MultiMix", "budgets": "10/5", "step": 100 * (seed + 1), "threshold": 0.4,
             "temperature": 1.5, "sets": {"val_cls": val}}))
    lines = collect_results.table([str(tmp_path / "s0"), str(tmp_path / "s1" / "results.json")],
                                  mean=True).splitlines()
    assert lines[2].startswith("| MultiMix | 10/5 | 100 | 0.400 | 1.500 | 0.800 [0.700, 0.900] "
                               "| - | - | - | 0.050 |")
    assert lines[4].startswith("| mean ± sd, 2 runs | | | 0.400 ± 0.000 | 1.500 ± 0.000 | "
                               "0.700 ± 0.141 | - |")


def test_the_mean_over_seeds_says_how_many_runs_have_each_figure(tmp_path):
    from scripts import collect_results
    severe = "val_seg_disease_hard"
    for seed, sets in enumerate(({"val_cls": {"accuracy": 0.8}, severe: {"dice": 0.7}},
                                 {"val_cls": {"accuracy": 0.6}, severe: {"dice": 0.9}},
                                 {"val_cls": {"accuracy": 0.7}})):
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "results.json").write_text(json.dumps(
            {"model": "MultiMix", "budgets": "10/5", "step": 100, "sets": sets}))
    mean_row = [cell.strip() for cell in collect_results.table(
        [str(tmp_path / f"s{s}") for s in range(3)], mean=True).splitlines()[-1].split("|")]
    assert mean_row[6] == "0.700 ± 0.100"  # val Acc, all three runs
    assert mean_row[-2] == "0.800 ± 0.141 (2 of 3)"  # severe Dice, two of them
    one = collect_results.table([str(tmp_path / "s0"), str(tmp_path / "s2")], mean=True)
    assert one.splitlines()[-1].endswith("| 0.700 (1 of 2) |")  # no sd from one run
