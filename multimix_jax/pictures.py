"""Pictures of predictions: mask overlays, saliency heat maps and example strips (PNG)."""

from __future__ import annotations

import pathlib

import numpy as np
from matplotlib import colormaps
from PIL import Image

from multimix_jax import metrics, summaries


def overlay_rgb(image: np.ndarray, mask_prob: np.ndarray, true_mask: np.ndarray | None = None) -> np.ndarray:
    """Gray image with the predicted mask (>= 0.5) tinted green; the true mask's boundary
    (``metrics.boundary``) in red."""
    gray = np.asarray(image, np.float32) / 255.0
    rgb = np.stack([gray] * 3, -1)
    pred = metrics.binarize(mask_prob)
    rgb[pred] = 0.6 * rgb[pred] + 0.4 * np.array([0.1, 0.9, 0.2])
    if true_mask is not None:
        rgb[metrics.boundary(np.asarray(true_mask) > 0)] = [1.0, 0.1, 0.1]
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def saliency_rgb(saliency: np.ndarray) -> np.ndarray:
    """Saliency map as an inferno heat map (min-max normalised)."""
    return (colormaps["inferno"](summaries.normalize_map(saliency))[..., :3] * 255).astype(np.uint8)


def mask_gray(mask_prob: np.ndarray) -> np.ndarray:
    """The predicted mask (>= 0.5) as a black and white image."""
    return (metrics.binarize(mask_prob) * 255).astype(np.uint8)


def save_png(path: pathlib.Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def example_strip(image: np.ndarray, saliency: np.ndarray, mask_prob: np.ndarray,
                  true_mask: np.ndarray | None = None) -> np.ndarray:
    """One film as an RGB strip input | saliency | predicted mask vs the true outline, enlarged
    (nearest) to at least 192 px high for viewing."""
    image = np.asarray(image).squeeze()
    strip = np.concatenate([np.stack([image] * 3, -1), saliency_rgb(saliency),
                            overlay_rgb(image, mask_prob, true_mask)], axis=1)
    scale = max(1, 192 // image.shape[0])
    return np.repeat(np.repeat(strip, scale, axis=0), scale, axis=1)


def write_example_pngs(out_dir: pathlib.Path, source, predictions: dict, count: int,
                       prefix: str) -> list[pathlib.Path]:
    """For the first ``count`` examples: one PNG strip input | saliency | overlay, from
    ``predictions`` that hold the saliency maps of at least those examples."""
    paths = []
    for i in range(min(count, len(source))):
        true = predictions["mask"][i] if "mask" in predictions else None
        path = out_dir / f"{prefix}_{i:02d}.png"
        save_png(path, example_strip(source[i]["image"], predictions["saliency"][i],
                                     predictions["mask_prob"][i], true))
        paths.append(path)
    return paths
