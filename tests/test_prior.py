"""prior: EM re-estimation of a set's class prior from calibrated predictions (Saerens et al.
2002), on simulated films whose true posteriors are known."""

import numpy as np
import pytest

from multimix_jax import prior
from multimix_jax.errors import UserError

TRAINING_PRIOR = 0.4  # the prior the simulated probabilities are calibrated under


def calibrated_predictions(new_prior: float, n: int = 4000, separation: float = 1.0,
                           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(pneumonia)) of n films drawn at ``new_prior``: a score s ~ N(+-separation, 1)
    per class, and the exact posterior of s under TRAINING_PRIOR (a calibrated model trained
    at that prior): logit = log(pi_t / (1 - pi_t)) + 2 * separation * s."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < new_prior).astype(np.int64)
    score = rng.normal(np.where(labels == 1, separation, -separation), 1.0)
    logit = np.log(TRAINING_PRIOR / (1 - TRAINING_PRIOR)) + 2 * separation * score
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


def test_the_training_prior_comes_from_the_checkpoint_or_a_sentence():
    assert prior.training_prior({prior.PRIOR_KEY: 0.62}) == 0.62
    for info in (None, {}, {prior.PRIOR_KEY: None}, {prior.PRIOR_KEY: 1.0}):
        with pytest.raises(UserError, match="--adapt_prior: this checkpoint records no"):
            prior.training_prior(info)
