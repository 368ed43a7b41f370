"""A stand-in for a trained checkpoint: evaluate/predict tests need no training or compile.

The fake model's outputs are functions of the image x in [0, 1]: P(pneumonia) = mean(x),
mask probability = x, saliency = x."""

from __future__ import annotations

import numpy as np

from multimix_jax import evaluation, sharding, steps


class FakeModel:
    def __init__(self):
        self.calls = 0  # predict_fn calls, one per batch

    def predict_fn(self, params, images) -> dict:
        self.calls += 1
        x = np.asarray(images, np.float32)[..., 0] / 255.0
        p = x.mean(axis=(1, 2))
        return {"class_probs": np.stack([1 - p, p], -1), "mask_probs": x, "saliency": x}


def install(monkeypatch, threshold: float = 0.5, step: int = 7,
            temperature: float | None = None) -> FakeModel:
    """Make evaluation.load_for_inference and steps.jit_predict return the fake model."""
    fake = FakeModel()
    loaded = evaluation.Loaded(model=None, params=None, mesh=sharding.make_mesh(), step=step,
                               threshold=threshold, temperature=temperature)
    monkeypatch.setattr(evaluation, "load_for_inference",
                        lambda config, workdir, which, allow=(): loaded)
    monkeypatch.setattr(steps, "jit_predict", lambda model, mesh, flip_tta=False: fake.predict_fn)
    return fake
