"""drift: a set's score drift from a 2-component mixture of its logits and the decision
threshold moved by it (--adapt_threshold), on simulated scores and on the fake model."""

import json

import numpy as np
import pytest
from ml_collections import ConfigDict
from scipy import special

from multimix_jax import drift, validation
from multimix_jax.errors import UserError


def two_class_probs(n: int = 400, prior: float = 0.5, shift: float = 0.0, seed: int = 0):
    """(labels, P(pneumonia)) with logits N(+-3, 1.2) per class, all moved by ``shift``."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < prior).astype(np.int64)
    return labels, special.expit(rng.normal(np.where(labels == 1, 3.0, -3.0), 1.2) + shift)


@pytest.mark.parametrize("prior", [0.25, 0.5, 0.75])
def test_the_crossing_divides_the_classes_whatever_their_prior(prior):
    _, probs = two_class_probs(prior=prior)
    assert drift.crossing(probs) == pytest.approx(0.0, abs=0.5)  # the classes are symmetric


def test_a_drift_of_both_classes_moves_the_threshold_by_it():
    labels, probs = two_class_probs()
    reference = drift.crossing(probs)
    _, drifted = two_class_probs(shift=1.5)  # the same films, every logit 1.5 higher
    moved = drift.moved_threshold(0.4, reference, drifted)
    assert moved.score_drift == pytest.approx(1.5, abs=1e-3)
    assert moved.threshold == pytest.approx(special.expit(special.logit(0.4) + moved.score_drift))
    # the moved threshold decides on the drifted films as the stored one did on the originals,
    # where the stored one would call more normal films pneumonia
    assert np.mean((drifted >= moved.threshold) == (probs >= 0.4)) > 0.99
    normal = labels == 0
    assert np.mean(drifted[normal] >= 0.4) > np.mean(probs[normal] >= 0.4) + 0.05


@pytest.mark.parametrize("what", ["one class", "few films"])
def test_without_two_modes_the_threshold_stays(what):
    labels, probs = two_class_probs()
    probs = probs[labels == 0] if what == "one class" else probs[:drift.MIN_FILMS - 1]
    assert drift.crossing(probs) is None
    assert drift.moved_threshold(0.4, 0.0, probs) == (None, 0.4)


def test_the_decision_records_where_its_calibrated_probabilities_divide():
    labels, probs = two_class_probs()
    eval_config = ConfigDict({"calibrate": True, "threshold": "fitted"})
    decision = validation.deployed_decision(eval_config, labels, probs)
    assert decision.score_crossing is not None
    assert decision.score_crossing == drift.crossing(decision.probabilities(probs))
    info = decision.info(flip_tta=False)
    assert drift.reference_crossing({"val_score": 0.9, **info}) == decision.score_crossing
    # the cross-fitting folds fit the decision alone: no mixture per fold
    fold = validation.fit_decision(eval_config, labels, probs)
    assert (fold.threshold, fold.temperature) == (decision.threshold, decision.temperature)
    assert fold.score_crossing is None and fold.encoded_prior is None


@pytest.mark.parametrize("info, says", [
    ({"val_score": 0.9, drift.CROSSING_KEY: None}, "gave no score mixture"),
    ({"val_score": None}, "was not validated"),
    ({"val_score": 0.9}, "predates .*--mode evaluate measures it")])
def test_the_reference_needs_a_validated_record(info, says):
    with pytest.raises(UserError, match=f"--adapt_threshold: this checkpoint.*{says}"):
        drift.reference_crossing(info)


# --------------------------------------------------------------------------- evaluate / predict
GRAYS = list(range(40, 100, 4)) + list(range(170, 230, 4))  # 15 normal, 15 pneumonia films


def _site(folder):
    """A classification folder of uniform films; the fake model's P(pneumonia) = gray / 255."""
    from tests.fixtures_util import write_jpeg
    for i, gray in enumerate(GRAYS):
        write_jpeg(folder / ("PNEUMONIA" if gray > 128 else "NORMAL") / f"{i}.jpeg", gray, side=32)
    return folder


def _install(monkeypatch, reference, threshold=0.5):
    from multimix_jax import evaluation
    from tests import fake_model
    fake_model.install(monkeypatch, threshold=threshold)
    info = {"val_score": 0.9, "threshold": threshold, drift.CROSSING_KEY: reference}
    loaded = evaluation.load_for_inference(None, None, None)._replace(info=info)
    monkeypatch.setattr(evaluation, "load_for_inference",
                        lambda config, workdir, which, allow=(): loaded)


def test_predict_adapt_threshold_moves_the_threshold_by_the_inputs_drift(tmp_path, monkeypatch):
    from multimix_jax import predict
    from tests.conftest import tiny_train_config
    site = _site(tmp_path / "site")
    _install(monkeypatch, 0.0)
    raw = predict.predict_files(tiny_train_config(), tmp_path, [str(site)], tmp_path / "raw")
    probs = np.array([row["prob_pneumonia"] for row in raw])
    reference = drift.crossing(probs) - 0.8  # the validation divided its films 0.8 lower
    _install(monkeypatch, reference)
    rows = predict.predict_files(tiny_train_config(), tmp_path, [str(site)], tmp_path / "out",
                                 adapt_threshold=True)
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())["adapt_threshold"]
    assert saved["score_drift"] == pytest.approx(0.8, abs=1e-6)
    assert saved["drift_threshold"] == pytest.approx(special.expit(0.8))
    assert [row["predicted"] == "PNEUMONIA" for row in rows] == list(probs >= special.expit(0.8))
    assert json.loads((tmp_path / "raw" / "predictions.json").read_text())["adapt_threshold"] is None


def test_evaluate_adapt_threshold_reports_each_sets_drift(tmp_path, monkeypatch):
    from multimix_jax import evaluate, sources
    from tests.conftest import tiny_train_config
    config = tiny_train_config()
    site = sources.extra_sources(config, {"site": ("classification", str(_site(
        tmp_path / "site")))})
    probs = np.array(GRAYS) / 255.0
    reference = drift.crossing(probs) - 0.8
    _install(monkeypatch, reference, threshold=0.3)  # too low for the site: normals called pneumonia
    plain = evaluate.evaluate(config, tmp_path, extra_sets=site, output_dir=tmp_path / "plain")
    moved = evaluate.evaluate(config, tmp_path, extra_sets=site, output_dir=tmp_path / "out",
                              adapt_threshold=True)
    assert moved["site"]["score_drift"] == pytest.approx(0.8, abs=1e-2)  # JPEG grays
    t = moved["site"]["drift_threshold"]
    assert t == pytest.approx(special.expit(special.logit(0.3) + moved["site"]["score_drift"]))
    assert moved["site"]["threshold"] == t and plain["site"]["threshold"] == 0.3
    assert moved["site"]["accuracy"] == 1.0 and plain["site"]["accuracy"] < 1.0
    # six test films hold no two modes: drift None, the stored threshold
    assert moved["test_cls"]["score_drift"] is None and moved["test_cls"]["threshold"] == 0.3
    assert "score_drift" not in plain["site"] and "score_drift" not in moved["test_seg"]
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["adapt_threshold"] == {"reference_crossing": reference}
    table = (tmp_path / "out" / "results.md").read_text()
    assert "--adapt_threshold: every classification set's threshold" in table
    assert "--adapt_threshold" not in (tmp_path / "plain" / "results.md").read_text()


def test_an_older_checkpoints_reference_is_measured_on_its_validation_films():
    older = {"val_score": 0.9, "threshold": 0.5}  # validated before the record
    assert drift.reference_crossing(older, from_validation=lambda: 0.25) == 0.25
    with pytest.raises(UserError, match="gave no score mixture"):
        drift.reference_crossing(older, from_validation=lambda: None)


def test_an_older_checkpoints_references_cost_one_pass_over_its_validation(tmp_path, monkeypatch):
    from multimix_jax import evaluate, evaluation, validation
    from tests import fake_model
    from tests.conftest import tiny_train_config
    fake_model.install(monkeypatch)
    older = evaluation.load_for_inference(None, None, None)._replace(
        info={"val_score": 0.9, "threshold": 0.5})  # validated before either record
    monkeypatch.setattr(evaluation, "load_for_inference",
                        lambda config, workdir, which, allow=(): older)
    passes = []
    monkeypatch.setattr(validation, "site_references_of_sets", lambda predict_set, sets: (
        passes.append(sets) or {"encoded_prior": 0.4, "score_crossing": 0.1}))
    saved = evaluate.evaluate(tiny_train_config(), tmp_path, output_dir=tmp_path / "out",
                              adapt_prior=True, adapt_threshold=True)
    assert len(passes) == 1 and "val_cls" in passes[0]
    assert "estimated_prior" in saved["test_cls"] and "score_drift" in saved["test_cls"]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["adapt_prior"] == {"encoded_prior": 0.4}
    assert results["adapt_threshold"] == {"reference_crossing": 0.1}
