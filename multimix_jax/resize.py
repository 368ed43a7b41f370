"""Bilinear resizing with ``align_corners=True`` semantics (docs/multimix.md, Architecture).

PyTorch's ``F.interpolate(..., mode='bilinear', align_corners=True)``, which the original
uses, samples output pixel i at input coordinate i * (in - 1) / (out - 1). That is
``jax.image.scale_and_translate`` (half-pixel convention) with scale (out - 1) / (in - 1),
translation 0.5 * (1 - scale) and no antialiasing, as its documentation states; it
contracts each spatial axis with a small interpolation matrix (matmuls on every backend).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def resize_bilinear_align_corners(x: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
    """Resize an NHWC batch to (height, width) like torch bilinear, align_corners=True."""
    if height < 1 or width < 1:
        raise ValueError(f"output size must be positive, got {height}x{width}")
    axes, scales = [], []
    for axis, out_size in ((1, height), (2, width)):
        in_size = x.shape[axis]
        if out_size == 1 or in_size == 1:  # a 1-pixel axis: torch samples index 0 only
            x = jnp.repeat(x[(slice(None),) * axis + (slice(0, 1),)], out_size, axis=axis)
        elif in_size != out_size:
            axes.append(axis)
            scales.append((out_size - 1) / (in_size - 1))
    if not axes:
        return x
    scale = np.asarray(scales, np.float32)
    return jax.image.scale_and_translate(
        x, (x.shape[0], height, width, x.shape[3]), spatial_dims=tuple(axes), scale=scale,
        translation=0.5 * (1.0 - scale), method="linear", antialias=False)


def upsample2x(x: jnp.ndarray) -> jnp.ndarray:
    """The decoder's 'up': bilinear x2, align_corners=True."""
    return resize_bilinear_align_corners(x, 2 * x.shape[1], 2 * x.shape[2])


def scale_by(x: jnp.ndarray, factor: float) -> jnp.ndarray:
    """``F.interpolate(x, scale_factor=factor, align_corners=True)``: output floor(size*factor)."""
    height = int(np.floor(x.shape[1] * factor))
    width = int(np.floor(x.shape[2] * factor))
    return resize_bilinear_align_corners(x, height, width)
