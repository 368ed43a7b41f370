"""Saliency map for the bridge (docs/multimix.md, Saliency bridge)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from multimix_jax.models import MultiMix


def saliency_map(model: MultiMix, params, images: jnp.ndarray) -> jnp.ndarray:
    """s = |d logit_k / d x| with k = argmax logits, encoder in inference mode (no dropout).

    Computed with ``jax.grad`` per image (no layer couples images, so the gradient of the
    batch sum of selected logits is each image's own gradient), not normalised, and wrapped
    in ``stop_gradient``: the rest of the network treats it as a constant input.
    """

    def selected_logit_sum(x):
        logits = model.apply({"params": params}, x, train=False, method=MultiMix.classify)
        predicted = jnp.argmax(logits, axis=-1)
        return jnp.take_along_axis(logits, predicted[:, None], axis=-1).sum()

    return jax.lax.stop_gradient(jnp.abs(jax.grad(selected_logit_sum)(images)))
