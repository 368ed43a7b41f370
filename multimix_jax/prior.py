"""A new site's class prior, estimated without its labels, and the posteriors adjusted to it:
the EM procedure of Saerens, Latinne & Decaestecker (2002), "Adjusting the outputs of a
classifier to new a priori probabilities: a simple procedure", Neural Computation 14(1)
(docs/multimix.md, A new site).

The training prior ``pi_t`` is the prior the probabilities are calibrated under: the pneumonia
fraction of the pooled validation films that the decision threshold (and the temperature, when
calibration is in use) is fitted on. Training records it with each validated checkpoint
(``val_prior``, beside the threshold); :func:`training_prior` reads it from there and nowhere
else.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np

from multimix_jax.errors import UserError

PRIOR_KEY = "val_prior"  # the checkpoint info's training prior
MAX_ITERATIONS = 1000
TOLERANCE = 1e-7


class Adapted(NamedTuple):
    """The estimated prior P'(pneumonia) of a set and its adjusted posteriors."""
    prior: float
    prob_pneumonia: np.ndarray
    iterations: int


def validation_prior(labels: np.ndarray) -> float:
    """The pneumonia fraction of the pooled validation labels (what :data:`PRIOR_KEY` holds)."""
    return float(np.mean(np.asarray(labels) == 1))


def training_prior(recorded: float | None) -> float:
    """The training prior recorded with a checkpoint (``Loaded.val_prior``); one sentence
    when it holds none."""
    if recorded is None or not 0.0 < float(recorded) < 1.0:
        raise UserError("--adapt_prior: this checkpoint records no validation class prior "
                        "strictly between 0 and 1 (an unvalidated checkpoint, a run trained "
                        "before priors were recorded, or a one-class validation set); pick a "
                        "validated checkpoint with --checkpoint best, or drop --adapt_prior")
    return float(recorded)


def adjust(prob_pneumonia: np.ndarray, training: float, new: float) -> np.ndarray:
    """Posteriors under prior ``new`` from posteriors under prior ``training`` (Saerens et al.
    2002, section 2.2): p' = (w1 p) / (w1 p + w0 (1 - p)), w1 = new/training,
    w0 = (1 - new)/(1 - training)."""
    p = np.asarray(prob_pneumonia, np.float64)
    positive = p * (new / training)
    negative = (1.0 - p) * ((1.0 - new) / (1.0 - training))
    return positive / (positive + negative)


def estimate(prob_pneumonia: np.ndarray, training: float) -> Adapted:
    """EM (Saerens et al. 2002, section 2.3): starting from ``training``, alternately adjust
    the posteriors to the current prior and take their mean as the next prior, until the
    prior moves less than :data:`TOLERANCE`."""
    p = np.asarray(prob_pneumonia, np.float64)
    if p.size == 0:
        return Adapted(float(training), p, 0)
    prior, adjusted = float(training), p
    for iteration in range(1, MAX_ITERATIONS + 1):
        adjusted = adjust(p, training, prior)
        new = float(adjusted.mean())
        converged = abs(new - prior) < TOLERANCE
        prior = new
        if converged:
            break
    return Adapted(prior, adjust(p, training, prior), iteration)


def adapt_predictions(predictions: Mapping[str, np.ndarray], training: float
                      ) -> tuple[dict, float]:
    """``predictions`` with ``prob_pneumonia`` replaced by the posteriors adjusted to the set's
    estimated prior (the model's, calibrated when calibration is in use, kept as
    ``prob_pneumonia_unadjusted``), and that estimated prior."""
    adapted = estimate(predictions["prob_pneumonia"], training)
    out = dict(predictions)
    out["prob_pneumonia_unadjusted"] = predictions["prob_pneumonia"]
    out["prob_pneumonia"] = adapted.prob_pneumonia
    return out, adapted.prior


def table_note(training: float) -> str:
    """The sentence under the results tables when the priors were adapted."""
    return (f"--adapt_prior: every classification set's P(pneumonia) is adjusted to that set's "
            f"own estimated class prior ('est. prior'; EM of Saerens et al. 2002 from the "
            f"training prior {training:.3f}, the pooled validation's pneumonia fraction); the "
            "metrics and the threshold apply to the adjusted probabilities.")
