"""A new site's score drift, estimated without its labels, and the decision threshold moved
with it (docs/multimix.md, A new site).

Under another scanner the model's scores can drift for both classes at once (on the proxy
site of docs/results/new_site.md the normal films' P(pneumonia) rose with the pneumonia
films', so the validation's threshold called many of them pneumonia while the two classes
stayed apart); EM's prior (``prior.py``) reads such a drift as more pneumonia. Here a
two-component Gaussian mixture on the logits of P(pneumonia) (``sklearn.mixture``) locates the
two modes of a set's scores, and the point between its means where the two component densities
cross (equal weights, so the class prior does not enter) marks where the set's scores divide.
The threshold moves by how far that point moved from the pooled validation films it was
fitted on: logit t' = logit t + (c_set - c_validation). The mixture's misfit (each class's
logits are not exactly Gaussian) cancels in the difference while the shapes stay; what
remains is the drift. It needs a set that holds both classes, seen as two modes: at least
:data:`MIN_FILMS` films, each component at least :data:`MIN_WEIGHT` of them, and the means
at least :data:`MIN_SEPARATION` apart in Ashman's D (Ashman, Bird & Zepf 1994; the films of one
class alone, split in two, stay below it); otherwise the threshold stays.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, NamedTuple

import numpy as np
from scipy import optimize, special
from sklearn import mixture

from multimix_jax import prior
from multimix_jax.errors import UserError

log = logging.getLogger("multimix_jax")

CROSSING_KEY = "score_crossing"  # the checkpoint info's reference crossing (None: undetermined)
MIN_FILMS = 20
MIN_WEIGHT = 0.05  # the smaller mixture component's weight, below which a set has one class
MIN_SEPARATION = 3.0  # Ashman's D = |m1 - m0| sqrt(2) / sqrt(s0^2 + s1^2) of two modes
CLIP = 1e-6  # probabilities are clipped to [CLIP, 1 - CLIP] before the logit
MIXTURE_SEED, MIXTURE_STARTS = 0, 5


class Drift(NamedTuple):
    """A set's score drift (logit units, None: not estimated) and the threshold moved by it."""
    score_drift: float | None
    threshold: float


def crossing(prob_pneumonia) -> float | None:
    """The logit between the two means of a 2-component Gaussian mixture fitted to
    logit(P(pneumonia)) where their densities cross (log N(z; m1, s1) = log N(z; m0, s0));
    None below :data:`MIN_FILMS` films, with a component under :data:`MIN_WEIGHT`, modes
    closer than :data:`MIN_SEPARATION`, or no crossing between the means."""
    p = np.clip(np.asarray(prob_pneumonia, np.float64).reshape(-1), CLIP, 1.0 - CLIP)
    if p.size < MIN_FILMS or np.ptp(p) == 0:
        return None
    fitted = mixture.GaussianMixture(2, n_init=MIXTURE_STARTS, random_state=MIXTURE_SEED).fit(
        special.logit(p)[:, None])
    if fitted.weights_.min() < MIN_WEIGHT:
        return None
    (low, high) = np.argsort(fitted.means_[:, 0])
    mean, sd = fitted.means_[:, 0], np.sqrt(fitted.covariances_.reshape(-1))
    if (mean[high] - mean[low]) * np.sqrt(2.0 / (sd[low] ** 2 + sd[high] ** 2)) < MIN_SEPARATION:
        return None
    log_ratio = lambda z: (-0.5 * ((z - mean[high]) / sd[high]) ** 2 - np.log(sd[high])
                           + 0.5 * ((z - mean[low]) / sd[low]) ** 2 + np.log(sd[low]))
    if not log_ratio(mean[low]) < 0 < log_ratio(mean[high]):
        return None
    return float(optimize.brentq(log_ratio, mean[low], mean[high], xtol=1e-9))


def moved_threshold(threshold: float, reference: float, prob_pneumonia) -> Drift:
    """The set's drift c_set - ``reference`` (:func:`crossing` of the set's P(pneumonia)) and
    ``threshold`` moved by it on the logit scale; the threshold unchanged (drift None) where the
    set's crossing is undetermined."""
    found = crossing(prob_pneumonia)
    if found is None:
        log.warning("--adapt_threshold: a set of %d films whose score mixture is undetermined "
                    "(fewer than %d films, one class or no two modes): its threshold stays",
                    np.size(prob_pneumonia), MIN_FILMS)
        return Drift(None, float(threshold))
    drift = found - reference
    t = float(np.clip(threshold, CLIP, 1.0 - CLIP))
    return Drift(float(drift), float(special.expit(special.logit(t) + drift)))


UNDETERMINED = ("--adapt_threshold: this checkpoint's validation films gave no score mixture "
                "to measure a drift from (too few films, one class or no two modes); drop "
                "--adapt_threshold")


def recorded_reference(info: Mapping | None) -> float | None:
    """The :func:`crossing` of the pooled validation films recorded with a checkpoint (its
    info's :data:`CROSSING_KEY`); None for a validated checkpoint that predates the record; one
    sentence for an unvalidated checkpoint or one whose validation gave no crossing."""
    info = info or {}
    if CROSSING_KEY not in info:
        if info.get("val_score") is None:
            raise UserError("--adapt_threshold: this checkpoint was not validated, so it "
                            "records no validation scores to measure a drift from; pick a "
                            "validated checkpoint with --checkpoint best, or drop "
                            "--adapt_threshold")
        return None
    if info[CROSSING_KEY] is None:
        raise UserError(UNDETERMINED)
    return float(info[CROSSING_KEY])


PREDATES = ("--adapt_threshold: this checkpoint predates the recording of its validation's "
            "score mixture; --mode evaluate measures it on the validation films, or retrain the "
            "run with this version, or drop --adapt_threshold")


def reference_crossing(info: Mapping | None,
                       from_validation: Callable[[], float | None] | None = None) -> float:
    """:func:`recorded_reference`; for a checkpoint that predates the record,
    ``from_validation()`` (evaluate: the validation films predicted again), else one sentence."""
    return prior.recorded_or_measured(recorded_reference(info), from_validation, PREDATES,
                                      UNDETERMINED)


def table_note(reference: float) -> str:
    """The sentence under the results tables when thresholds were moved."""
    return ("--adapt_threshold: every classification set's threshold is moved by its score "
            "drift ('drift', logit units: where a 2-component Gaussian mixture of the set's "
            "logits divides them, minus the same point of the pooled validation films, "
            f"{reference:.3f}); sets whose mixture is undetermined keep the stored threshold.")
