"""Metric writing: TensorBoard event files (tensorboardX: no TensorFlow needed; clu's
metric_writers import TensorFlow) plus a ``metrics.jsonl`` that notebooks and scripts read."""

from __future__ import annotations

import json
import logging
import pathlib

import numpy as np

from tensorboardX import SummaryWriter

from multimix_jax.files import write_atomically


class MetricWriter:
    """Scalars and images of one run; ``start_step`` is the step it (re)starts from: rows of
    later steps, written by a run that was stopped before checkpointing them, are dropped from
    metrics.jsonl and purged from TensorBoard so the re-run steps appear once."""

    def __init__(self, workdir: str | pathlib.Path, start_step: int = 0):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._tb = SummaryWriter(str(self.workdir / "tensorboard"), purge_step=start_step + 1)
        path = self.workdir / "metrics.jsonl"
        drop_rows_after(path, start_step)
        self._jsonl = open(path, "a")

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

    def close(self) -> None:
        self._tb.close()
        self._jsonl.close()


def drop_rows_after(path: pathlib.Path, step: int) -> None:
    """Keeps the rows of ``path`` (JSON lines with a "step") up to ``step``; atomic."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            if line.strip() and json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):  # half-written by a killed run: dropped
            logging.getLogger("multimix_jax").warning("%s: dropped a damaged row %r", path,
                                                      line[:80])
    if len(kept) != len(lines):
        write_atomically(path, "".join(line + "\n" for line in kept))


def normalize_map(values: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling to [0, 1] for display (saliency has no fixed range)."""
    values = np.asarray(values, np.float32)
    lo = values.min(axis=(-2, -1), keepdims=True)
    hi = values.max(axis=(-2, -1), keepdims=True)
    return (values - lo) / np.maximum(hi - lo, 1e-12)
