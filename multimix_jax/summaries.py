"""Metric writing: TensorBoard event files (tensorboardX: no TensorFlow needed; clu's
metric_writers import TensorFlow) plus a ``metrics.jsonl`` that notebooks and scripts read."""

from __future__ import annotations

import json
import pathlib

import numpy as np
from tensorboardX import SummaryWriter


class MetricWriter:
    def __init__(self, workdir: str | pathlib.Path):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._tb = SummaryWriter(str(self.workdir / "tensorboard"))
        self._jsonl = open(self.workdir / "metrics.jsonl", "a")

    def write_scalars(self, step: int, scalars: dict) -> None:
        clean = {k: float(v) for k, v in scalars.items()}
        for name, value in clean.items():
            self._tb.add_scalar(name, value, step)
        self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
        self._jsonl.flush()

    def write_images(self, step: int, images: dict) -> None:
        """name -> float array (N, H, W) in [0, 1]."""
        for name, value in images.items():
            value = np.clip(np.asarray(value, np.float32), 0.0, 1.0)[..., None]
            self._tb.add_images(name, value, step, dataformats="NHWC")

    def flush(self) -> None:
        self._tb.flush()
        self._jsonl.flush()

    def close(self) -> None:
        self._tb.close()
        self._jsonl.close()


def normalize_map(values: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling to [0, 1] for display (saliency has no fixed range)."""
    values = np.asarray(values, np.float32)
    lo = values.min(axis=(-2, -1), keepdims=True)
    hi = values.max(axis=(-2, -1), keepdims=True)
    return (values - lo) / np.maximum(hi - lo, 1e-12)
