"""prior: EM re-estimation of a set's class prior from calibrated predictions (Saerens et al.
2002), on simulated films whose true posteriors are known."""

import numpy as np
import pytest

from multimix_jax import prior, sources, validation
from multimix_jax.errors import UserError

TRAINING_PRIOR = 0.4  # the prior the simulated probabilities are calibrated under


def calibrated_predictions(new_prior: float, n: int = 4000, separation: float = 1.0,
                           seed: int = 0, model_prior: float = TRAINING_PRIOR
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(pneumonia)) of n films drawn at ``new_prior``: a score s ~ N(+-separation, 1)
    per class, and the exact posterior of s under ``model_prior`` (a calibrated model trained
    at that prior): logit = log(pi_t / (1 - pi_t)) + 2 * separation * s."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < new_prior).astype(np.int64)
    score = rng.normal(np.where(labels == 1, separation, -separation), 1.0)
    logit = np.log(model_prior / (1 - model_prior)) + 2 * separation * score
    return labels, 1 / (1 + np.exp(-logit))


@pytest.mark.parametrize("new_prior", [0.25, 0.5, 0.75])
def test_em_recovers_a_known_prior(new_prior):
    labels, probs = calibrated_predictions(new_prior)
    adapted = prior.estimate(probs, TRAINING_PRIOR)
    assert adapted.prior == pytest.approx(new_prior, abs=0.03)
    assert abs(probs.mean() - new_prior) > 0.03 or new_prior == 0.5  # the raw mean is biased
    # the adjusted posteriors are the exact posteriors under the set's true prior, nearly
    logit = np.log(probs / (1 - probs)) + np.log(new_prior / (1 - new_prior)) - np.log(
        TRAINING_PRIOR / (1 - TRAINING_PRIOR))
    np.testing.assert_allclose(adapted.prob_pneumonia, 1 / (1 + np.exp(-logit)), atol=0.03)
    # EM's fixed point: the prior is the mean of the posteriors adjusted to it
    assert adapted.prob_pneumonia.mean() == pytest.approx(adapted.prior, abs=1e-6)


def test_adjustment_to_the_training_prior_changes_nothing():
    probs = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    np.testing.assert_allclose(prior.adjust(probs, 0.3, 0.3), probs)
    assert prior.adjust(np.array([0.5]), 0.5, 0.8)[0] == pytest.approx(0.8)


def test_adapt_predictions_keeps_the_model_probabilities():
    _, probs = calibrated_predictions(0.75, n=500)
    adapted, estimated = prior.adapt_predictions({"prob_pneumonia": probs, "label": None},
                                                 TRAINING_PRIOR)
    assert adapted["prob_pneumonia_unadjusted"] is probs
    assert estimated > TRAINING_PRIOR and adapted["prob_pneumonia"].mean() > probs.mean()


# --------------------------------------------------------------------------- the base prior
BALANCED, VALIDATION_PRIOR = 0.5, 0.27  # a model calibrated on a balanced stream; its validation


def _encoded_on_validation(seed: int = 1) -> float:
    labels, probs = calibrated_predictions(VALIDATION_PRIOR, n=20_000, seed=seed,
                                           model_prior=BALANCED)
    assert np.mean(labels) == pytest.approx(VALIDATION_PRIOR, abs=0.01)
    return prior.encoded_prior(labels, probs)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_encoded_prior_is_the_models_not_the_validations(seed):
    assert _encoded_on_validation(seed) == pytest.approx(BALANCED, abs=0.03)


def test_em_from_the_encoded_prior_recovers_every_new_prior():
    encoded, fraction = _encoded_on_validation(), VALIDATION_PRIOR
    old_errors = []
    for k, new_prior in enumerate((0.25, 0.5, 0.75)):
        _, probs = calibrated_predictions(new_prior, n=20_000, seed=10 + k, model_prior=BALANCED)
        assert prior.estimate(probs, encoded).prior == pytest.approx(new_prior, abs=0.03)
        old_errors.append(abs(prior.estimate(probs, fraction).prior - new_prior))
    assert max(old_errors) > 0.1  # the validation's fraction as the base (the old one) fails


def test_an_undetermined_encoded_prior_is_none():
    labels, probs = calibrated_predictions(VALIDATION_PRIOR, n=200, model_prior=BALANCED)
    assert prior.encoded_prior(labels, probs) is not None
    assert prior.encoded_prior(np.ones_like(labels), probs) is None  # one class
    assert prior.encoded_prior(labels, np.full(probs.shape, 0.3)) is None  # no information
    assert prior.encoded_prior(labels[:0], probs[:0]) is None
    assert prior.encoded_prior(labels, (probs > 0.5).astype(float)) is None  # only 0 and 1


def test_the_base_prior_comes_from_the_checkpoint_or_a_sentence():
    validated = {"val_score": 0.9, "threshold": 0.5}
    assert prior.base_prior({**validated, prior.ENCODED_PRIOR_KEY: 0.62}) == 0.62
    for recorded in (None, 0.0, 1.0):
        with pytest.raises(UserError, match="--adapt_prior: this checkpoint's validation could "
                                            "not determine"):
            prior.base_prior({**validated, prior.ENCODED_PRIOR_KEY: recorded})
    for unvalidated in (None, {}, {"val_score": None, "threshold": 0.5}):
        with pytest.raises(UserError, match="--adapt_prior: this checkpoint was not validated"):
            prior.base_prior(unvalidated)


@pytest.mark.parametrize("old", [{"val_score": 0.9, "threshold": 0.5, "val_prior": 0.27},
                                 {"val_prior": 0.27}, {"val_score": 0.9, "threshold": 0.5}])
def test_a_checkpoint_older_than_the_encoded_prior_is_refused(old):
    with pytest.raises(UserError, match="--adapt_prior: this checkpoint predates the recording "
                                        "of the class prior its probabilities encode.*retrain"):
        prior.base_prior(old)


@pytest.mark.parametrize("calibrate", [False, True])
def test_the_decision_records_the_prior_its_calibrated_probabilities_encode(calibrate):
    from ml_collections import ConfigDict
    labels, probs = calibrated_predictions(VALIDATION_PRIOR, n=2000, model_prior=BALANCED)
    eval_config = ConfigDict({"calibrate": calibrate, "threshold": "fitted"})
    decision = validation.deployed_decision(eval_config, labels, probs)
    expected = prior.encoded_prior(labels, decision.probabilities(probs))
    assert decision.encoded_prior == expected and expected != pytest.approx(np.mean(labels))
    info = decision.info(flip_tta=False)
    assert info[prior.ENCODED_PRIOR_KEY] == expected and prior.OLD_PRIOR_KEY not in info
    assert prior.base_prior({"val_score": 0.9, **info}) == expected


# --------------------------------------------------------------------------- evaluate / predict
def _install_with_prior(monkeypatch, encoded: float | None, threshold: float = 0.5,
                        info: dict | None = None):
    """tests/fake_model.py (P(pneumonia) = mean gray / 255), its validated checkpoint
    recording ``encoded`` as the base prior (``info``: the checkpoint's info instead)."""
    from multimix_jax import evaluation
    from tests import fake_model
    fake = fake_model.install(monkeypatch, threshold=threshold)
    if info is None:
        info = {"val_score": 0.9, "threshold": threshold, prior.ENCODED_PRIOR_KEY: encoded}
    loaded = evaluation.load_for_inference(None, None, None)._replace(info=info)
    monkeypatch.setattr(evaluation, "load_for_inference", lambda config, workdir, which, allow=(): loaded)
    return fake


def test_evaluate_adapt_prior_reports_each_sets_estimated_prior(tmp_path, monkeypatch):
    import json
    from multimix_jax import evaluate, evaluation
    from tests.conftest import tiny_train_config
    _install_with_prior(monkeypatch, encoded=0.8)
    config = tiny_train_config()
    plain = evaluate.evaluate(config, tmp_path, output_dir=tmp_path / "plain")
    results = evaluate.evaluate(config, tmp_path, output_dir=tmp_path / "out", adapt_prior=True)

    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["adapt_prior"] == {"encoded_prior": 0.8}
    for name in ("val_cls", "test_cls"):
        estimated = saved["sets"][name]["estimated_prior"]
        val_sets = validation.validation_sets(sources.make_splits(config))
        source = sources.eval_sources(config, val_sets)[name][1]
        probs = np.array([np.asarray(source[i]["image"]).mean() / 255 for i in range(len(source))])
        expected = prior.estimate(probs, 0.8)
        assert estimated == pytest.approx(expected.prior, abs=1e-6)
        # the metrics apply to the adjusted posteriors, at the stored threshold
        labels = np.array([source[i]["label"] for i in range(len(source))])
        adjusted_acc = np.mean((expected.prob_pneumonia >= 0.5) == labels)
        assert results[name]["accuracy"] == pytest.approx(adjusted_acc)
    assert "estimated_prior" not in saved["sets"]["test_seg"]
    assert "estimated_prior" not in json.loads((tmp_path / "plain" / "results.json").read_text()
                                               )["sets"]["test_cls"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "est. prior" in table and "--adapt_prior: every classification set's P(pneumonia)" in table
    assert "--adapt_prior" not in (tmp_path / "plain" / "results.md").read_text()


@pytest.mark.parametrize("threshold", [0.2, 0.45, 0.7])
def test_a_fitted_threshold_moves_with_the_prior_and_keeps_every_decision(threshold):
    labels, probs = calibrated_predictions(0.25)
    adapted = prior.estimate(probs, TRAINING_PRIOR)
    moved = prior.adapted_threshold(threshold, "fitted", TRAINING_PRIOR, adapted.prior)
    assert moved < threshold  # fewer pneumonia films than the base: a lower cut
    np.testing.assert_array_equal(adapted.prob_pneumonia >= moved, probs >= threshold)
    # the fixed 0.5 stays, and then decides differently: the fewest errors at the new prior
    assert prior.adapted_threshold(0.5, "fixed", TRAINING_PRIOR, adapted.prior) == 0.5
    fewer = np.mean((adapted.prob_pneumonia >= 0.5) == labels)
    assert fewer > np.mean((probs >= 0.5) == labels)


def test_evaluate_adapt_prior_keeps_the_decisions_of_a_fitted_threshold(tmp_path, monkeypatch):
    import json
    from multimix_jax import evaluate
    from tests.conftest import tiny_train_config
    _install_with_prior(monkeypatch, encoded=0.8, threshold=0.6)
    config = tiny_train_config()
    config.eval.threshold = "fitted"
    plain = evaluate.evaluate(config, tmp_path, output_dir=tmp_path / "plain")
    adapted = evaluate.evaluate(config, tmp_path, output_dir=tmp_path / "out", adapt_prior=True)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())["sets"]["test_cls"]
    assert saved["adapted_threshold"] == pytest.approx(prior.adjust(
        np.asarray(0.6), 0.8, saved["estimated_prior"]))
    for metric in ("accuracy", "balanced_accuracy", "f1_normal"):
        assert adapted["test_cls"][metric] == pytest.approx(plain["test_cls"][metric])


@pytest.mark.parametrize("info, says", [
    ({"val_score": 0.9, "threshold": 0.5, prior.ENCODED_PRIOR_KEY: None}, "could not determine"),
    ({"val_score": None, "threshold": 0.5}, "was not validated")])
def test_evaluate_adapt_prior_needs_a_recorded_prior(tmp_path, monkeypatch, info, says):
    from multimix_jax import evaluate
    from tests.conftest import tiny_train_config
    _install_with_prior(monkeypatch, None, info=info)
    with pytest.raises(UserError, match=f"--adapt_prior: this checkpoint.* {says}"):
        evaluate.evaluate(tiny_train_config(), tmp_path, adapt_prior=True)
    evaluate.evaluate(tiny_train_config(), tmp_path)  # the checkpoint is usable without it


def test_evaluate_estimates_the_base_of_a_checkpoint_older_than_its_record(tmp_path,
                                                                          monkeypatch):
    """A validated checkpoint without ``encoded_prior``: evaluate estimates it on the config's
    classification validation films at the stored temperature, as training records it;
    predict, which has no validation films, refuses."""
    import json
    from multimix_jax import evaluate, predict
    from tests.conftest import tiny_train_config
    _install_with_prior(monkeypatch, None, info={"val_score": 0.9, "threshold": 0.5,
                                                 "val_prior": 0.27})
    config = tiny_train_config()
    evaluate.evaluate(config, tmp_path, output_dir=tmp_path / "out", adapt_prior=True)
    val_sets = validation.validation_sets(sources.make_splits(config),
                                          config.eval.shifted_validation)
    films = [source[i] for task, source in val_sets.values() if task == "classification"
             for i in range(len(source))]
    expected = prior.encoded_prior(np.array([f["label"] for f in films]),
                                   np.array([np.asarray(f["image"]).mean() / 255 for f in films]))
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert expected is not None and saved["adapt_prior"]["encoded_prior"] == pytest.approx(expected)
    with pytest.raises(UserError, match="predates .*--mode evaluate estimates it"):
        predict.predict_files(config, tmp_path, [str(tmp_path)], tmp_path / "p", adapt_prior=True)


def test_predict_adapt_prior_adjusts_every_row_to_the_inputs_prior(tmp_path, monkeypatch):
    import json
    from multimix_jax import predict
    from tests.conftest import tiny_train_config
    from tests.fixtures_util import write_jpeg
    _install_with_prior(monkeypatch, encoded=0.5, threshold=0.5)
    grays = [40, 60, 80, 150, 210, 230]
    for i, gray in enumerate(grays):
        write_jpeg(tmp_path / "in" / f"{i}.jpeg", gray, side=32)
    rows = predict.predict_files(tiny_train_config(), tmp_path, [str(tmp_path / "in")],
                                 tmp_path / "out", adapt_prior=True)
    raw = np.array([row["prob_pneumonia"] for row in predict.predict_files(
        tiny_train_config(), tmp_path, [str(tmp_path / "in")], tmp_path / "raw")])
    expected = prior.estimate(raw, 0.5)
    np.testing.assert_allclose([row["prob_pneumonia"] for row in rows],
                               expected.prob_pneumonia, atol=1e-6)
    assert [row["predicted"] == "PNEUMONIA" for row in rows] == list(expected.prob_pneumonia >= 0.5)
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert saved["adapt_prior"]["encoded_prior"] == 0.5
    assert saved["adapt_prior"]["estimated_prior"] == pytest.approx(expected.prior)
    assert json.loads((tmp_path / "raw" / "predictions.json").read_text())["adapt_prior"] is None
