"""Anatomical post-processing of predicted lung masks, ``eval.mask_postprocess``
(docs/multimix.md, A new site): 'none' leaves the binarised mask as it is; 'lungs' keeps at
most the two largest connected components (the two lungs), drops any of them smaller than
:data:`MIN_COMPONENT_FRACTION` of the largest (specks), and fills the holes that opacities
punch into them (``scipy.ndimage.binary_fill_holes``). Applied by evaluate and predict to the
mask thresholded at 0.5."""

from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import ndimage

from multimix_jax import metrics
from multimix_jax.errors import UserError

MODES = ("none", "lungs")
MIN_COMPONENT_FRACTION = 0.1  # a second component below this share of the largest is a speck
LUNG_COUNT = 2


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else one sentence naming the field."""
    if mode not in MODES:
        raise UserError(f"--config.eval.mask_postprocess={mode}: expected one of "
                        f"{', '.join(MODES)}")
    return mode


def keep_lungs(mask: np.ndarray, min_fraction: float = MIN_COMPONENT_FRACTION) -> np.ndarray:
    """One binary mask (H, W): its two largest 8-connected components, those under
    ``min_fraction`` of the largest dropped, holes filled."""
    mask = np.asarray(mask, bool)
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]  # component k + 1 has sizes[k] pixels
    order = np.argsort(sizes)[::-1][:LUNG_COUNT]
    kept = [k + 1 for k in order if sizes[k] >= min_fraction * sizes[order[0]]]
    return ndimage.binary_fill_holes(np.isin(labels, kept))


def binary_masks(mask_prob: np.ndarray, mode: str) -> np.ndarray:
    """Masks (N, H, W) thresholded at 0.5, then post-processed by ``mode``."""
    masks = metrics.binarize(mask_prob)
    if check_mode(mode) == "none":
        return masks
    return np.stack([keep_lungs(m) for m in masks]) if len(masks) else masks


def apply_to_predictions(predictions: Mapping[str, np.ndarray], mode: str) -> dict:
    """``predictions`` whose ``mask_prob`` is the post-processed binary mask (as 0/1 floats,
    so that every later threshold at 0.5 sees it unchanged); the model's probabilities are
    kept as ``mask_prob_raw``. Unchanged for 'none'."""
    if check_mode(mode) == "none" or "mask_prob" not in predictions:
        return dict(predictions)
    out = dict(predictions)
    out["mask_prob_raw"] = predictions["mask_prob"]
    out["mask_prob"] = binary_masks(predictions["mask_prob"], mode).astype(np.float32)
    return out


def table_note(mode: str) -> str:
    """The sentence under the results tables saying which masks were scored."""
    if mode == "none":
        return ""
    return ("Masks post-processed (eval.mask_postprocess=lungs): the two largest connected "
            f"components of the mask at 0.5, specks under {MIN_COMPONENT_FRACTION:g} of the "
            "largest dropped, holes filled; Dice, HD and the pictures score these masks.")
