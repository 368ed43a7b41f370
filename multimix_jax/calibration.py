"""Temperature scaling of P(pneumonia) (docs/multimix.md, Decision threshold and calibration).

The model's two-class softmax is a logistic of the logit z = log(p1 / p0); a temperature T > 0
gives the calibrated P(pneumonia) = sigmoid(z / T) (Guo et al. 2017, "On Calibration of Modern
Neural Networks"). T is fitted by minimising the negative log-likelihood of the labels on the
pooled validation films (bounded scalar search, ``scipy.optimize.minimize_scalar``). T = 1 is
the model itself; ``None`` means no temperature is in use.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special

# The search interval for T: wide enough for any trained model, bounded so that a set that
# one class dominates cannot drive T to 0 or infinity.
TEMPERATURE_BOUNDS = (0.05, 20.0)
# P(pneumonia) is float32: clip it this far from 0 and 1 before taking the logit.
_EPS = 1e-7


def logit(prob_pneumonia) -> np.ndarray:
    """z = log(p / (1 - p)) of P(pneumonia), float64, finite."""
    p = np.clip(np.asarray(prob_pneumonia, np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(prob_pneumonia, temperature: float | None) -> np.ndarray:
    """sigmoid(logit(p) / T); ``p`` unchanged (as float64) when ``temperature`` is None."""
    if temperature is None:
        return np.asarray(prob_pneumonia, np.float64)
    return special.expit(logit(prob_pneumonia) / float(temperature))


def uncalibrated(arrays) -> np.ndarray | None:
    """``arrays``' "prob_pneumonia_uncalibrated" where a temperature made its "prob_pneumonia"
    differ from it, else None: without a temperature the two are the same figures, and the
    "before calibration" figures would only repeat the others."""
    raw = arrays.get("prob_pneumonia_uncalibrated")
    if raw is None or np.array_equal(raw, arrays["prob_pneumonia"]):
        return None
    return raw


def negative_log_likelihood(labels, prob_pneumonia, temperature: float) -> float:
    """Mean NLL of the labels under sigmoid(logit(p) / T)."""
    y = np.asarray(labels, np.float64).reshape(-1)
    z = logit(prob_pneumonia).reshape(-1) / temperature
    # -log sigmoid(z) = logaddexp(0, -z); -log(1 - sigmoid(z)) = logaddexp(0, z)
    return float(np.mean(np.where(y > 0, np.logaddexp(0.0, -z), np.logaddexp(0.0, z))))


def fit_temperature(labels, prob_pneumonia) -> float:
    """The T in ``TEMPERATURE_BOUNDS`` that minimises the NLL of ``labels``; 1.0 (the model
    as it is) for an empty set."""
    if np.size(labels) == 0:
        return 1.0
    result = optimize.minimize_scalar(
        lambda t: negative_log_likelihood(labels, prob_pneumonia, t),
        bounds=TEMPERATURE_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(result.x)
