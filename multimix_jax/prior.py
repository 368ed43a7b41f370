"""A new site's class prior, estimated without its labels, and the posteriors adjusted to it:
the EM procedure of Saerens, Latinne & Decaestecker (2002), "Adjusting the outputs of a
classifier to new a priori probabilities: a simple procedure", Neural Computation 14(1)
(docs/multimix.md, A new site).

EM's base prior ``pi_t`` is the class prior that the probabilities encode (calibrated when
calibration is in use): the model trains on a class-balanced labelled stream and a temperature
has no intercept, so it is not the validation's pneumonia fraction. :func:`encoded_prior`
estimates it on the pooled validation films, whose prior is known; training records it with
each validated checkpoint (``encoded_prior``, beside the threshold) and :func:`base_prior`
reads it from there and nowhere else.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import numpy as np
from scipy import optimize

from multimix_jax.errors import UserError

ENCODED_PRIOR_KEY = "encoded_prior"  # the checkpoint info's base prior (None: undetermined)
OLD_PRIOR_KEY = "val_prior"  # older checkpoints': the validation's pneumonia fraction, not a base
EPSILON = 1e-6  # the encoded prior is sought in (EPSILON, 1 - EPSILON)
MAX_ITERATIONS = 1000
TOLERANCE = 1e-7


class Adapted(NamedTuple):
    """The estimated prior P'(pneumonia) of a set and its adjusted posteriors."""
    prior: float
    prob_pneumonia: np.ndarray
    iterations: int


def encoded_prior(labels: np.ndarray, prob_pneumonia: np.ndarray) -> float | None:
    """The prior pi_m that posteriors p_k encode, from films of known prior pi_v (their
    pneumonia fraction): the root in (EPSILON, 1 - EPSILON) of
    (1/n) sum_k adjust(p_k, pi_m, pi_v) = pi_v, EM's fixed point (Saerens et al. 2002,
    section 2.3) at the set's true prior - posteriors that encode pi_m, adjusted to pi_v, are
    the posteriors under pi_v, whose mean is pi_v. The left side falls monotonically as pi_m
    rises, so ``scipy.optimize.brentq`` finds the one root. None where it is undetermined: no
    films, one class, the same p for every film, or no root in the interval."""
    labels, p = np.asarray(labels).reshape(-1), np.asarray(prob_pneumonia, np.float64).reshape(-1)
    if p.size == 0 or np.all(p == p[0]):
        return None
    known = float(np.mean(labels == 1))
    if not 0.0 < known < 1.0:
        return None
    gap = lambda encoded: float(adjust(p, encoded, known).mean()) - known
    low, high = gap(EPSILON), gap(1.0 - EPSILON)
    if not np.isfinite([low, high]).all() or low * high > 0:
        return None
    return float(optimize.brentq(gap, EPSILON, 1.0 - EPSILON, xtol=1e-10))


UNDETERMINED = ("--adapt_prior: this checkpoint's validation could not determine the class "
                "prior its probabilities encode (no classification validation films, films of "
                "one class only, or the same P(pneumonia) for every film); drop --adapt_prior")


def recorded_base(info: Mapping | None) -> float | None:
    """EM's base prior pi_t recorded with a checkpoint (its info's :data:`ENCODED_PRIOR_KEY`,
    ``Loaded.info``); None for a validated checkpoint that predates the record; one sentence
    for an unvalidated checkpoint or one whose validation could not determine it."""
    info = info or {}
    if ENCODED_PRIOR_KEY not in info:
        if info.get("val_score") is None and OLD_PRIOR_KEY not in info:
            raise UserError("--adapt_prior: this checkpoint was not validated, so it records no "
                            "class prior for its probabilities; pick a validated checkpoint "
                            "with --checkpoint best, or drop --adapt_prior")
        return None
    recorded = info[ENCODED_PRIOR_KEY]
    if recorded is None or not 0.0 < float(recorded) < 1.0:
        raise UserError(UNDETERMINED)
    return float(recorded)


PREDATES = ("--adapt_prior: this checkpoint predates the recording of the class prior its "
            "probabilities encode (earlier versions recorded at most the validation's pneumonia "
            f"fraction, '{OLD_PRIOR_KEY}', which is not EM's base); --mode evaluate estimates it "
            "from the validation films, or retrain the run with this version, or drop "
            "--adapt_prior")


def recorded_or_measured(recorded: float | None, from_validation: Callable | None,
                         predates: str, undetermined: str,
                         valid: Callable[[float], bool] = lambda value: True) -> float:
    """A checkpoint's recorded reference for a site adaptation (``recorded``; None: the
    checkpoint predates the record); else ``from_validation()`` (evaluate: measured on its
    validation films as training records it), else the sentence ``predates``; the sentence
    ``undetermined`` where that measure is None or not ``valid``."""
    if recorded is not None:
        return recorded
    if from_validation is None:
        raise UserError(predates)
    measured = from_validation()
    if measured is None or not valid(float(measured)):
        raise UserError(undetermined)
    return float(measured)


def base_prior(info: Mapping | None,
               from_validation: Callable[[], float | None] | None = None) -> float:
    """:func:`recorded_base`; for a checkpoint that predates the record, ``from_validation()``
    (evaluate: :func:`encoded_prior` of its validation films at the stored temperature, what
    training records), else one sentence."""
    return recorded_or_measured(recorded_base(info), from_validation, PREDATES, UNDETERMINED,
                                lambda value: 0.0 < value < 1.0)


def adjust(prob_pneumonia: np.ndarray, training: float, new: float) -> np.ndarray:
    """Posteriors under prior ``new`` from posteriors under prior ``training`` (Saerens et al.
    2002, section 2.2): p' = (w1 p) / (w1 p + w0 (1 - p)), w1 = new/training,
    w0 = (1 - new)/(1 - training)."""
    p = np.asarray(prob_pneumonia, np.float64)
    positive = p * (new / training)
    negative = (1.0 - p) * ((1.0 - new) / (1.0 - training))
    return positive / (positive + negative)


def estimate(prob_pneumonia: np.ndarray, base: float) -> Adapted:
    """EM (Saerens et al. 2002, section 2.3): starting from the ``base`` prior (the one the
    posteriors encode, :func:`base_prior`), alternately adjust the posteriors to the current
    prior and take their mean as the next prior, until the prior moves less than
    :data:`TOLERANCE`."""
    p = np.asarray(prob_pneumonia, np.float64)
    if p.size == 0:
        return Adapted(float(base), p, 0)
    prior, adjusted = float(base), p
    for iteration in range(1, MAX_ITERATIONS + 1):
        adjusted = adjust(p, base, prior)
        new = float(adjusted.mean())
        converged = abs(new - prior) < TOLERANCE
        prior = new
        if converged:
            break
    return Adapted(prior, adjust(p, base, prior), iteration)


def adapt_predictions(predictions: Mapping[str, np.ndarray], base: float
                      ) -> tuple[dict, float]:
    """``predictions`` with ``prob_pneumonia`` replaced by the posteriors adjusted to the set's
    estimated prior (the model's, calibrated when calibration is in use, kept as
    ``prob_pneumonia_unadjusted``), and that estimated prior; EM starts from ``base``."""
    adapted = estimate(predictions["prob_pneumonia"], base)
    out = dict(predictions)
    out["prob_pneumonia_unadjusted"] = predictions["prob_pneumonia"]
    out["prob_pneumonia"] = adapted.prob_pneumonia
    return out, adapted.prior


def adapted_threshold(threshold: float, rule: str, base: float, estimated: float) -> float:
    """The decision threshold on posteriors adjusted from ``base`` to ``estimated``. A fitted
    threshold (``eval.threshold='fitted'``, the best balanced accuracy) is a cut on the
    likelihood ratio, which balanced accuracy does not weigh by the prior: it is adjusted with
    the posteriors, adjust(t, base, estimated), and every decision stays. The fixed 0.5 stays:
    on adjusted posteriors it is the minimum-error decision under the estimated prior
    (Saerens et al. 2002, section 4)."""
    if rule == "fitted":
        return float(adjust(np.asarray(threshold), base, estimated))
    return float(threshold)


def table_note(base: float) -> str:
    """The sentence under the results tables when the priors were adapted."""
    return (f"--adapt_prior: every classification set's P(pneumonia) is adjusted to that set's "
            f"own estimated class prior ('est. prior'; EM of Saerens et al. 2002 from the base "
            f"prior {base:.3f}, the prior the probabilities encode, estimated on the pooled "
            "validation films); the metrics apply to the adjusted probabilities, at a fitted "
            "threshold adjusted with them (the same decisions) or at 0.5 (the fewest errors "
            "at the estimated prior).")
