"""calibration: a temperature fitted by NLL recovers a known one, lowers the calibration error
of over-confident probabilities, and is applied by run_predictions (both P keys)."""

import numpy as np
import pytest
from scipy import special

from multimix_jax import calibration, evaluation, sharding, sources, steps
from tests import fake_model


def _overconfident(n: int = 20000, temperature: float = 2.5, seed: int = 0):
    """Labels drawn from sigmoid(z), probabilities reported as sigmoid(T z): T too sharp."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < special.expit(z)).astype(np.int64)
    return labels, special.expit(temperature * z)


def _ece(labels, prob, bins: int = 15) -> float:
    """Expected calibration error of P(pneumonia) over equal-width bins (test helper only)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(labels[which == b].mean() - prob[which == b].mean()) * np.mean(which == b)
                     for b in range(bins) if (which == b).any()))


def test_the_fitted_temperature_recovers_the_sharpening_and_lowers_ece_and_nll():
    labels, prob = _overconfident()
    t = calibration.fit_temperature(labels, prob)
    assert t == pytest.approx(2.5, rel=0.05)
    calibrated = calibration.apply_temperature(prob, t)
    assert _ece(labels, calibrated) < 0.5 * _ece(labels, prob)
    assert (calibration.negative_log_likelihood(labels, prob, t)
            < calibration.negative_log_likelihood(labels, prob, 1.0))


def test_temperature_keeps_the_order_and_the_side_of_one_half():
    prob = np.array([0.01, 0.3, 0.5, 0.7, 0.999])
    out = calibration.apply_temperature(prob, 3.0)
    assert np.all(np.diff(out) > 0) and np.array_equal(out >= 0.5, prob >= 0.5)
    np.testing.assert_allclose(calibration.apply_temperature(prob, 1.0), prob, rtol=1e-6)
    np.testing.assert_array_equal(calibration.apply_temperature(prob, None), prob)


def test_extreme_probabilities_and_degenerate_sets_stay_finite_and_bounded():
    low, high = calibration.TEMPERATURE_BOUNDS
    assert np.isfinite(calibration.logit(np.array([0.0, 1.0]))).all()
    # perfectly separated, confident: the NLL wants T -> 0, the bound stops it
    assert low <= calibration.fit_temperature([0, 1], [0.0, 1.0]) <= high
    assert calibration.fit_temperature([], []) == 1.0


def test_run_predictions_carries_the_calibrated_and_the_model_probability():
    images = (np.arange(6, dtype=np.uint8)[:, None, None] * 40) * np.ones((1, 8, 8), np.uint8)
    source = sources.ArraySource({"image": images})
    fake, mesh = fake_model.FakeModel(), sharding.make_mesh()
    plain = evaluation.run_predictions(fake.predict_fn, None, source, 4, 8, mesh)
    np.testing.assert_array_equal(plain["prob_pneumonia"], plain["prob_pneumonia_uncalibrated"])
    scaled = evaluation.run_predictions(fake.predict_fn, None, source, 4, 8, mesh,
                                        temperature=2.0)
    np.testing.assert_allclose(scaled["prob_pneumonia_uncalibrated"], images.mean((1, 2)) / 255,
                               rtol=1e-6)
    np.testing.assert_allclose(scaled["prob_pneumonia"], calibration.apply_temperature(
        plain["prob_pneumonia"], 2.0))
