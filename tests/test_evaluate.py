"""evaluate and the evaluation module: each set predicted once, classification at the
checkpoint's decision threshold, tables that show the threshold and the empty predicted masks
(tests/fake_model.py stands in for a checkpoint)."""

import json
import logging
import math

import numpy as np
import pytest

from multimix_jax import evaluate, evaluation, input_pipeline, metrics, names, sharding
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
    assert fake.calls == batches  # no set is predicted twice (the example PNGs reuse it)
    assert len(list((tmp_path / "out" / "examples").glob("*.png"))) == 4  # 2 per seg set

    labels = evaluation.eval_sources(config)["test_cls"][1]
    normal = np.mean([labels[i]["label"] == names.NORMAL for i in range(len(labels))])
    assert results["test_cls"]["accuracy"] == pytest.approx(normal)
    assert results["test_cls"]["recall_pneumonia"] == 0.0

    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["cls_threshold"] == 1.01 and saved["step"] == 7 and "paper_row" in saved
    assert CLS_KEYS <= set(saved["sets"]["test_cls"]) and "dice" in saved["sets"]["test_seg"]
    assert saved["sets"]["test_cls"]["threshold"] == 1.01
    table = (tmp_path / "out" / "results.md").read_text()
    assert "P(pneumonia) >= 1.010" in table and "empty masks" in table


def test_run_predictions_keeps_the_first_saliency_maps_only(monkeypatch):
    images = np.arange(10, dtype=np.uint8)[:, None, None] * np.ones((1, 8, 8), np.uint8) * 20
    source = input_pipeline.ArraySource({"image": images})
    fake, mesh = fake_model.FakeModel(), sharding.make_mesh()
    out = evaluation.run_predictions(fake.predict_fn, None, source, 4, 8, mesh, saliency_count=5)
    assert out["mask_prob"].shape == (10, 8, 8) and out["saliency"].shape == (5, 8, 8)
    np.testing.assert_allclose(out["saliency"], images[:5] / 255.0)
    assert "saliency" not in evaluation.run_predictions(fake.predict_fn, None, source, 4, 8, mesh)


def test_fitted_threshold_only_when_asked():
    predictions = {"label": np.array([0, 0, 1, 1]), "prob_pneumonia": np.array([.1, .2, .3, .4])}
    plain = evaluation.set_metrics(names.CLASSIFICATION, predictions)
    assert "fitted_threshold" not in plain and plain["accuracy"] == 0.5
    fitted = evaluation.set_metrics(names.CLASSIFICATION, predictions, fit_threshold=True)
    assert fitted["fitted_threshold"] == 0.3


def test_stored_threshold(caplog):
    assert evaluation.stored_threshold({"val_score": 0.8, "cls_threshold": 0.3, "val": {}}) == 0.3
    with caplog.at_level(logging.INFO, logger="multimix_jax"):
        assert evaluation.stored_threshold({"val_score": None, "cls_threshold": 0.5}) == 0.5
    assert caplog.text.count("holds no decision threshold") == 1


def test_tables_show_the_threshold_and_the_empty_masks():
    results = {"test_cls": metrics.classification_metrics([0, 1, 1], [0.2, 0.35, 0.9], 0.3),
               "test_seg": {"n": 4, "dice": 0.5, "hd": 90.0, "hd95": 91.0, "ssim": 0.4,
                            "jaccard": 0.4, "empty_pred": 3, "hd_penalised": 3}}
    layout = {"in_cls": "test_cls", "in_seg": "test_seg"}
    lines = evaluation.markdown_tables(results, layout, "MultiMix", "10/5", 0.3).splitlines()
    assert lines[0].endswith("| x-DS | empty masks |") and lines[2].endswith("| 3 |")
    assert any("P(pneumonia) >= 0.300" in line for line in lines)
    header = [cell.strip() for cell in lines[6].strip("|").split("|")]
    seg = dict(zip(header, (cell.strip() for cell in lines[9].strip("|").split("|"))))
    cls = dict(zip(header, (cell.strip() for cell in lines[8].strip("|").split("|"))))
    assert seg["empty masks"] == "3" and seg["HD"] == "90.000"
    assert cls["accuracy"] == "1.000" and cls["acc@0.5"] == "0.667"
