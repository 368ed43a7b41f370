"""Bilinear resizing with ``align_corners=True`` semantics (method.md, Architecture).

Hand-written because ``jax.image.resize`` uses half-pixel centres and antialiases when
shrinking, which is a different operation from PyTorch's
``F.interpolate(..., mode='bilinear', align_corners=True)`` that the original uses.
Implemented as two small dense interpolation matrices (one per spatial axis), which XLA
turns into matmuls on every backend and whose transpose is the exact gradient.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def align_corners_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) linear-interpolation weights; src = i * (in-1) / (out-1)."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got in={in_size} out={out_size}")
    weights = np.zeros((out_size, in_size), np.float32)
    if out_size == 1 or in_size == 1:
        weights[:, 0] = 1.0
        return weights
    src = np.arange(out_size, dtype=np.float64) * (in_size - 1) / (out_size - 1)
    lo = np.clip(np.floor(src).astype(np.int64), 0, in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = (src - lo).astype(np.float32)
    rows = np.arange(out_size)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    np.add.at(weights, (rows, hi), frac)
    return weights


def resize_bilinear_align_corners(x: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
    """Resize an NHWC batch to (height, width) like torch bilinear, align_corners=True."""
    _, in_h, in_w, _ = x.shape
    if (in_h, in_w) == (height, width):
        return x
    rows = jnp.asarray(align_corners_matrix(in_h, height), x.dtype)
    cols = jnp.asarray(align_corners_matrix(in_w, width), x.dtype)
    return jnp.einsum("oh,bhwc,pw->bopc", rows, x, cols)


def upsample2x(x: jnp.ndarray) -> jnp.ndarray:
    """The decoder's 'up': bilinear x2, align_corners=True."""
    return resize_bilinear_align_corners(x, 2 * x.shape[1], 2 * x.shape[2])


def scale_by(x: jnp.ndarray, factor: float) -> jnp.ndarray:
    """``F.interpolate(x, scale_factor=factor, align_corners=True)``: output floor(size*factor)."""
    height = int(np.floor(x.shape[1] * factor))
    width = int(np.floor(x.shape[2] * factor))
    return resize_bilinear_align_corners(x, height, width)
