"""The four MultiMix loss terms and their weighted sum (docs/multimix.md, Losses).

Total = L_cls + lambda * L_fix + alpha * L_dice + beta * L_kl (+ gamma * L_occ, 0 in the
paper), no ramp-up.
Classification logits are (N, num_classes); segmentation logits are (N, H, W, 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

KL_MODES = ("bernoulli", "original", "none")


def classification_loss(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """L_cls = mean CE(logits(x_c), c) over the labelled classification batch."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def fixmatch_loss(weak_logits: jnp.ndarray, strong_logits: jnp.ndarray,
                  threshold: float = 0.7) -> tuple[jnp.ndarray, jnp.ndarray]:
    """L_fix = mean_i [max softmax(w_i) >= tau] * CE(strong_i, argmax softmax(w_i)).

    The weak branch is stop-gradient; the mean runs over ALL unlabelled samples (masked
    ones count as 0), as in FixMatch. Returns (loss, mask) with mask the float 0/1 vector
    whose mean is the pseudo-label mask rate.
    """
    weak_probs = jax.nn.softmax(jax.lax.stop_gradient(weak_logits), axis=-1)
    confidence = weak_probs.max(axis=-1)
    pseudo_labels = weak_probs.argmax(axis=-1)
    mask = (confidence >= threshold).astype(strong_logits.dtype)
    per_sample = optax.softmax_cross_entropy_with_integer_labels(strong_logits, pseudo_labels)
    return (per_sample * mask).mean(), mask


def dice_loss(seg_logits: jnp.ndarray, masks: jnp.ndarray, smooth: float = 1.0) -> jnp.ndarray:
    """L_dice = mean_n 1 - (2 sum(p y) + s) / (sum p + sum y + s), p = sigmoid(logits)."""
    probs = jax.nn.sigmoid(seg_logits)
    axes = tuple(range(1, seg_logits.ndim))
    intersection = (probs * masks).sum(axes)
    denominator = probs.sum(axes) + masks.sum(axes)
    return (1.0 - (2.0 * intersection + smooth) / (denominator + smooth)).mean()


def bernoulli_kl(labeled_logits: jnp.ndarray, unlabeled_logits: jnp.ndarray) -> jnp.ndarray:
    """Mean over pixels and images of KL(Bern(p_l) || Bern(p_u)), p = sigmoid(logits).

    The labelled and unlabelled predictions are paired by batch position. Computed from
    logits with log-sigmoids so it stays finite for saturated predictions.
    """
    log_p, log_not_p = jax.nn.log_sigmoid(labeled_logits), jax.nn.log_sigmoid(-labeled_logits)
    log_q, log_not_q = jax.nn.log_sigmoid(unlabeled_logits), jax.nn.log_sigmoid(-unlabeled_logits)
    p = jnp.exp(log_p)
    kl = p * (log_p - log_q) + (1.0 - p) * (log_not_p - log_not_q)
    return kl.mean()


def original_softmax_kl(labeled_logits: jnp.ndarray, unlabeled_logits: jnp.ndarray) -> jnp.ndarray:
    """The original code's term: KL of softmaxes over the SINGLE output channel.

    softmax over one channel is 1 everywhere, so this is identically zero (and so is its
    gradient); kept to reproduce the original for comparison.
    """
    target = jax.nn.softmax(labeled_logits, axis=-1)
    log_input = jax.nn.log_softmax(unlabeled_logits, axis=-1)
    return (target * (jnp.log(target) - log_input)).mean()


def segmentation_kl(labeled_logits: jnp.ndarray, unlabeled_logits: jnp.ndarray,
                    mode: str = "bernoulli") -> jnp.ndarray:
    """L_kl between labelled and unlabelled segmentation predictions; ``mode`` in KL_MODES."""
    if mode == "bernoulli":
        return bernoulli_kl(labeled_logits, unlabeled_logits)
    if mode == "original":
        return original_softmax_kl(labeled_logits, unlabeled_logits)
    if mode == "none":
        return jnp.zeros((), labeled_logits.dtype)
    raise ValueError(f"loss.kl must be one of {KL_MODES}, got {mode!r}")


def occlusion_consistency_loss(occluded_logits: jnp.ndarray, clean_logits: jnp.ndarray,
                               smooth: float = 1.0) -> jnp.ndarray:
    """L_occ = L_dice(occluded view, [sigmoid(clean view) > 0.5]): the mask predicted on an
    unlabelled film, stop-gradient and hardened, is the target of the prediction on the same
    film under a painted occlusion (FixMatch's hard pseudo-labels, Sohn et al. 2020, with a
    segmentation perturbation as in French et al. 2020)."""
    pseudo_masks = (jax.lax.stop_gradient(clean_logits) > 0).astype(occluded_logits.dtype)
    return dice_loss(occluded_logits, pseudo_masks, smooth)


def total_loss(terms: dict, weights) -> jnp.ndarray:
    """L_cls + lambda L_fix + alpha L_dice + beta L_kl + gamma L_occ over the terms present
    in ``terms``.

    ``weights`` maps 'cls', 'fixmatch', 'dice', 'kl', 'occlusion' to their weights (config.loss).
    """
    return sum(weights[name] * value for name, value in terms.items())
