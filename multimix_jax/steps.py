"""The jitted data-parallel training step and the prediction step (docs/multimix.md, Losses;
Training loop and input pipeline); the train state and optimizer are in ``state``, the mesh
and batch placement in ``sharding``.

A batch is a dict of streams, each a dict of NHWC float arrays in [-1, 1] (and int labels):
  seg_labeled   {'image', 'mask'}   labelled segmentation (x_s, y_s)
  seg_unlabeled {'image'[, 'occluded']}  unlabelled segmentation (x_u), for the seg KL (and the
                                    same films under a painted occlusion, for L_occ)
  cls_labeled   {'image', 'label'}  labelled classification (x_c, c)
  cls_unlabeled {'weak', 'strong'}  one unlabelled batch, weakly and strongly augmented
Which streams a config needs, and which loss terms, is decided by ``plan.Plan``.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from clu import metrics as clu_metrics
from jax.sharding import Mesh

from multimix_jax import losses
from multimix_jax.names import CLS_LABELED, CLS_UNLABELED, SEG_LABELED, SEG_UNLABELED
from multimix_jax.models import MultiMix
from multimix_jax.plan import OCCLUDED, Plan
from multimix_jax.saliency import saliency_map
from multimix_jax.sharding import data_sharding, replicated
from multimix_jax.state import TrainState


# --------------------------------------------------------------------------- metrics
@functools.lru_cache(maxsize=None)
def _collection_for(names: tuple[str, ...]) -> type:
    return clu_metrics.Collection.create(
        **{name: clu_metrics.Average.from_output(name) for name in names})


def metrics_collection(scalars: dict) -> type:
    """clu ``metrics.Collection`` class of the step's scalars (each an Average): the
    ``Plan.metric_names`` that ``compute_losses`` returns (sorted by name, as JAX returns a
    dict from a transformed function)."""
    return _collection_for(tuple(scalars))


# --------------------------------------------------------------------------- inputs
IMAGE_KEYS = ("image", "weak", "strong", OCCLUDED)


def normalize_images(images: jnp.ndarray) -> jnp.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1], the one normalisation used everywhere
    (docs/multimix.md, Training). Float inputs are taken as already normalised."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 127.5 - 1.0
    return images


def normalize_batch(batch: dict) -> dict:
    """Images to [-1, 1], masks to float {0, 1}, labels unchanged; on the device."""
    out = {}
    for stream, fields in batch.items():
        out[stream] = {k: normalize_images(v) if k in IMAGE_KEYS else
                       (v.astype(jnp.float32) if k == "mask" else v) for k, v in fields.items()}
    return out


# --------------------------------------------------------------------------- losses
def compute_losses(params, batch: dict, dropout_rng: jax.Array, *, model: MultiMix, config,
                   segment_all_images: bool = False):
    """Forward pass of one step and the weighted loss (docs/multimix.md, Losses).

    The encoder runs once on all images. The saliency pass and the decoder run ONLY on the
    segmentation streams: no layer couples images, so this equals the original's decoding
    of all images (``segment_all_images=True``, kept for tests and benchmarks) at ~40%
    fewer FLOPs. Returns (total_loss, scalars dict).
    """
    loss_cfg, plan = config.loss, Plan.from_config(config)
    batch = normalize_batch(batch)
    encoder_rng, decoder_rng = jax.random.split(dropout_rng)
    parts = [(stream, key) for stream in plan.streams for key in plan.stream_images(stream)]
    fed = {(stream, key): batch[stream][key][:plan.image_rows(key, batch[stream][key].shape[0])]
           for stream, key in parts}
    images = jnp.concatenate([fed[part] for part in parts], axis=0)
    sizes = np.cumsum([0] + [fed[part].shape[0] for part in parts])
    rows = {part: slice(sizes[i], sizes[i + 1]) for i, part in enumerate(parts)}
    skips, logits = model.apply({"params": params}, images, train=True,
                                rngs={"dropout": encoder_rng}, method=MultiMix.encode)

    terms, scalars = {}, {}
    if plan.segmentation:
        n_seg = int(sum(fed[stream, key].shape[0] for stream in plan.seg_streams
                        for key in plan.stream_images(stream)))
        decode_n = images.shape[0] if segment_all_images else n_seg
        decode_images = images[:decode_n]
        saliency = saliency_map(model, params, decode_images) if model.use_bridge else None
        seg_logits = model.apply({"params": params}, decode_images, saliency,
                                 [s[:decode_n] for s in skips], train=True,
                                 rngs={"dropout": decoder_rng}, method=MultiMix.decode)
        labeled_seg = seg_logits[rows[SEG_LABELED, "image"]]
        masks = batch[SEG_LABELED]["mask"]
        terms["dice"] = losses.dice_loss(labeled_seg, masks, loss_cfg.dice_smooth)
        scalars["dice_loss"] = terms["dice"]
        hard = (labeled_seg > 0).astype(masks.dtype)
        inter, total = (hard * masks).sum((1, 2, 3)), hard.sum((1, 2, 3)) + masks.sum((1, 2, 3))
        scalars["train_dice"] = jnp.where(total > 0, 2 * inter / jnp.maximum(total, 1), 1.0).mean()
        if plan.seg_kl:
            unlabeled_seg = seg_logits[rows[SEG_UNLABELED, "image"]]
            terms["kl"] = losses.segmentation_kl(labeled_seg, unlabeled_seg, loss_cfg.kl)
            scalars["kl_loss"] = terms["kl"]
        if plan.seg_consistency:
            occluded = seg_logits[rows[SEG_UNLABELED, OCCLUDED]]
            clean = seg_logits[rows[SEG_UNLABELED, "image"]][:occluded.shape[0]]
            terms["occlusion"] = losses.occlusion_consistency_loss(occluded, clean,
                                                                   loss_cfg.dice_smooth)
            scalars["occlusion_loss"] = terms["occlusion"]
    if plan.classification:
        labeled_logits, labels = logits[rows[CLS_LABELED, "image"]], batch[CLS_LABELED]["label"]
        terms["cls"] = losses.classification_loss(labeled_logits, labels)
        scalars["cls_loss"] = terms["cls"]
        scalars["accuracy"] = (labeled_logits.argmax(-1) == labels).mean()
        if plan.fixmatch:
            terms["fixmatch"], mask = losses.fixmatch_loss(
                logits[rows[CLS_UNLABELED, "weak"]], logits[rows[CLS_UNLABELED, "strong"]],
                loss_cfg.threshold)
            scalars["fixmatch_loss"] = terms["fixmatch"]
            scalars["mask_rate"] = mask.mean()
    total = losses.total_loss({name: terms[name] for name, _ in plan.loss_weights},
                              dict(plan.loss_weights))
    scalars["loss"] = total
    return total, {name: scalars[name] for name in plan.metric_names}


# --------------------------------------------------------------------------- steps
def train_step(state: TrainState, batch: dict, *, model: MultiMix,
               tx: optax.GradientTransformation, config, segment_all_images: bool = False):
    """One Adam step on the combined loss; returns (new_state, metrics Collection)."""
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(compute_losses, has_aux=True)
    (_, scalars), grads = grad_fn(state.params, batch, dropout_rng, model=model, config=config,
                                  segment_all_images=segment_all_images)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = optax.incremental_update(params, state.ema_params,
                                          step_size=1.0 - config.optim.ema_decay)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              ema_params=ema_params)
    collection = metrics_collection(scalars).single_from_model_output(**scalars)
    return new_state, collection


def _predict_normalized(params, images: jnp.ndarray, model: MultiMix) -> dict:
    saliency = saliency_map(model, params, images)
    skips, logits = model.apply({"params": params}, images, train=False, method=MultiMix.encode)
    seg_logits = model.apply({"params": params}, images, saliency if model.use_bridge else None,
                             skips, train=False, method=MultiMix.decode)
    return {"class_probs": jax.nn.softmax(logits, -1),
            "mask_probs": jax.nn.sigmoid(seg_logits[..., 0]),
            "saliency": saliency[..., 0]}


def predict(params, images: jnp.ndarray, *, model: MultiMix, flip_tta: bool = False) -> dict:
    """Inference (no dropout): class probabilities, mask probabilities and the saliency map.

    ``flip_tta``: also predict the horizontally flipped images and average the two (maps
    flipped back), as the training's weak augmentation flips too (docs/multimix.md, Recipe
    for unseen films)."""
    images = normalize_images(images)
    out = _predict_normalized(params, images, model)
    if flip_tta:
        flipped = _predict_normalized(params, images[:, :, ::-1], model)
        out = {k: (v + (flipped[k] if k == "class_probs" else flipped[k][:, :, ::-1])) / 2
               for k, v in out.items()}
    return out


def jit_train_step(model: MultiMix, tx: optax.GradientTransformation, config, mesh: Mesh,
                   segment_all_images: bool = False) -> Callable:
    """``train_step`` jitted over ``mesh``: state replicated and donated, batch sharded."""
    step = functools.partial(train_step, model=model, tx=tx, config=config,
                             segment_all_images=segment_all_images)
    return jax.jit(step, in_shardings=(replicated(mesh), data_sharding(mesh)),
                   out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=0)


def jit_predict(model: MultiMix, mesh: Mesh, flip_tta: bool = False) -> Callable:
    """``predict`` over ``mesh``: images sharded, outputs gathered (replicated), so that every
    process can read the whole batch's predictions."""
    return jax.jit(functools.partial(predict, model=model, flip_tta=flip_tta),
                   in_shardings=(replicated(mesh), data_sharding(mesh)),
                   out_shardings=replicated(mesh))
