"""Grain input pipelines: the five training streams and the evaluation batches
(docs/multimix.md, Training; Training loop and input pipeline), over the splits that
:mod:`multimix_jax.sources` draws.

Images travel as uint8 (N, S, S, 1) and are normalised to [-1, 1] on the device
(``steps.normalize_batch``); masks as uint8 {0, 1}; labels as int32.

Randomness: every stream is ``EpochShuffle(MapDataset.source(...).seed(s)).repeat()`` followed
by ``random_map`` BEFORE ``to_iter_dataset()``, so each element's augmentation depends only
on (seed, stream, position): the same seed gives the same batches, with or without worker
processes, and the iterator state (a position) can be checkpointed and restored.
"""

from __future__ import annotations

import sys
from typing import Iterator, Sequence

import grain
import numpy as np
from grain.experimental import ZipMapDataset

from multimix_jax import augment
from multimix_jax.errors import UserError
from multimix_jax.names import (CLS_LABELED, CLS_UNLABELED, SEG_LABELED, SEG_UNLABELED,
                                STREAMS)
from multimix_jax.plan import OCCLUDED, Plan
from multimix_jax.sources import DataSplits


# --------------------------------------------------------------------------- transforms
def _as_hw_uint8(image: np.ndarray, size: int, what: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.shape != (size, size) or image.dtype != np.uint8:
        raise ValueError(f"{what} of shape {image.shape} dtype {image.dtype}; the config "
                         f"expects uint8 ({size}, {size}): rebuild the data at this size")
    return image


class StreamTransform(grain.transforms.RandomMap):
    """Per-stream augmentation (docs/multimix.md, Augmentations): weak for labelled classification,
    weak + strong from the SAME image for the unlabelled one, none for segmentation unless
    ``augment.seg_joint`` (then a joint image+mask geometric transform).

    ``augment.acquisition`` adds acquisition-style jitter (rotation, zoom, aspect ratio,
    exposure curve, blur, noise) to every view except the weak view that makes the FixMatch
    pseudo-labels; ``augment.opacity_prob`` paints random opacities inside the labelled lung
    masks, ``augment.occlusion_prob`` dense ones hiding their border with bright overlays
    (docs/multimix.md, Recipe for unseen films). ``occluded_view`` (the plan's occlusion-
    consistency term) adds to each unlabelled segmentation film the same view under a painted
    occlusion, drawn after everything else. All off: the original's augmentation.
    """

    def __init__(self, stream: str, image_size: int, augment_config,
                 occluded_view: bool = False):
        self.stream, self.size = stream, image_size
        self.pad = int(round(augment_config.pad_fraction * image_size))
        self.num_ops = augment_config.randaugment_num_ops
        self.magnitude = augment_config.randaugment_magnitude
        self.seg_joint = augment_config.seg_joint
        self.acquisition = augment_config.acquisition
        self.opacity_prob = augment_config.opacity_prob
        self.occlusion_prob = augment_config.occlusion_prob
        self.occluded_view = occluded_view

    def _acquire(self, image: np.ndarray, mask, rng: np.random.Generator):
        """Acquisition jitter of an image (and its mask), when switched on."""
        if not self.acquisition:
            return image, mask
        image, mask = augment.geometric_jitter(image, mask, rng)
        return augment.photometric_jitter(image, rng), mask

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        image = _as_hw_uint8(element["image"], self.size)
        if self.stream == CLS_LABELED:
            image, _ = self._acquire(augment.weak_augment(image, rng, self.pad), None, rng)
            return {"image": image[..., None], "label": np.int32(element["label"])}
        if self.stream == CLS_UNLABELED:
            weak = augment.weak_augment(image, rng, self.pad)  # rng order: weak, then strong
            strong = augment.strong_augment(image, rng, self.pad, self.num_ops, self.magnitude)
            return {"weak": weak[..., None], "strong": self._acquire(strong, None, rng)[0][..., None]}
        if self.stream == SEG_LABELED:
            mask = _as_hw_uint8(element["mask"], self.size, "mask")
            if self.seg_joint:
                image, mask = augment.joint_geometric_augment(image, mask, rng, self.pad)
            if self.opacity_prob and rng.random() < self.opacity_prob:
                image = augment.random_opacity(image, mask, rng)
            if self.occlusion_prob and rng.random() < self.occlusion_prob:
                image = augment.occluding_opacity(image, mask, rng)
            image, mask = self._acquire(image, mask, rng)
            return {"image": image[..., None], "mask": mask[..., None]}
        if self.stream == SEG_UNLABELED:
            if self.seg_joint:
                image = augment.weak_augment(image, rng, self.pad)
            image, _ = self._acquire(image, None, rng)
            if not self.occluded_view:
                return {"image": image[..., None]}
            return {"image": image[..., None],
                    OCCLUDED: augment.unlabeled_occlusion(image, rng)[..., None]}
        raise ValueError(f"unknown stream {self.stream!r}")


# --------------------------------------------------------------------------- datasets
def stream_seed(seed: int, stream: str, extra: bool = False) -> int:
    """The shuffle and augmentation seed of a stream (of its extra pool: another one)."""
    entropy = [seed, STREAMS.index(stream)] + ([1] if extra else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def extra_rows(config, stream: str, batch: int) -> int:
    """Rows of each ``batch`` of an unlabelled ``stream`` drawn from its extra pool:
    ``round(unlabeled_extra_share * batch)`` (docs/multimix.md, Extra unlabelled films)."""
    spec = config.data.cls if stream == CLS_UNLABELED else config.data.seg
    share = float(spec.get("unlabeled_extra_share", 0.0))
    short = "cls" if stream == CLS_UNLABELED else "seg"
    if not 0.0 <= share <= 1.0:
        raise UserError(f"data.{short}.unlabeled_extra_share={share} must be between 0 and 1")
    return int(round(share * batch))


def _shuffled_batches(source, seed: int, rows: int, stream: str, config) -> grain.MapDataset:
    """Batches of ``rows`` from ``source``, reshuffled each epoch and augmented by position."""
    return (EpochShuffle(grain.MapDataset.source(source).seed(seed))
            .repeat()
            .random_map(StreamTransform(stream, config.data.image_size, config.augment,
                                        Plan.from_config(config).seg_consistency))
            .batch(rows, drop_remainder=True))


def _concatenate(parts: Sequence[dict]) -> dict:
    """One batch from the pool's rows followed by the extra pool's rows."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class EpochShuffle(grain.MapDataset):
    """Grain's ``.shuffle()`` contract (each epoch a new permutation, fixed by the pipeline's
    seed and the epoch) from a numpy permutation cached per epoch. Grain's ``index_shuffle``
    costs more per element the smaller the dataset (~0.3 ms at 100 examples, more at 10):
    on the small labelled sets it was most of the pipeline's time."""

    def __init__(self, parent: grain.MapDataset, seed: int | None = None):
        super().__init__(parent)
        seed = self._default_seed if seed is None else seed
        if seed is None:
            raise ValueError("EpochShuffle needs a seed: call .seed(s) on the dataset first")
        self._seed, self._permutations = int(seed), {}

    def __len__(self) -> int:
        return len(self._parent)

    def __str__(self) -> str:
        return "EpochShuffle"

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of ``epoch`` (the last two are kept: prefetch threads straddle one)."""
        order = self._permutations.get(epoch)
        if order is None:
            order = np.random.default_rng([self._seed, epoch]).permutation(len(self))
            self._permutations = {e: o for e, o in self._permutations.items() if e == epoch - 1}
            self._permutations[epoch] = order
        return order

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        epoch, position = divmod(index, len(self))
        return self._parent[int(self.permutation(epoch)[position])]


def process_batch_size(global_batch: int, process_count: int, what: str) -> int:
    """This process's share of a global batch (each process feeds only its own rows)."""
    if global_batch % process_count:
        raise ValueError(f"{what}={global_batch} must be a multiple of the {process_count} "
                         "processes, so that each feeds an equal part of every batch")
    return global_batch // process_count


def train_dataset(config, splits: DataSplits, streams: Sequence[str],
                  process_index: int | None = None,
                  process_count: int | None = None) -> grain.IterDataset:
    """Infinite, per-epoch reshuffled batches of all ``streams`` (a dict of stream dicts; the
    config's ``plan.Plan.streams``).

    With several processes (multi-host), process p of P yields rows [p*b/P, (p+1)*b/P) of
    every global batch of b = ``per_stream_batch`` (``sharding.shard_batch`` puts them there):
    each stream is batched by b/P and process p takes local batches p, p+P, p+2P, ... The
    shuffle, the augmentation (keyed by position) and hence the union over the processes are
    exactly the one-process batches. Defaults: ``jax.process_index()``/``process_count()``.
    """
    if process_index is None or process_count is None:
        import jax
        process_index, process_count = jax.process_index(), jax.process_count()
    local_batch = process_batch_size(config.data.per_stream_batch, process_count,
                                     "config.data.per_stream_batch")
    per_stream = []
    for stream in streams:
        source = getattr(splits, stream)
        if source is None or len(source) == 0:
            raise ValueError(f"stream {stream} has no examples: check the data config")
        extra = getattr(splits, f"{stream}_extra", None)
        n_extra = extra_rows(config, stream, local_batch) if extra is not None else 0
        parts = [(source, stream_seed(config.seed, stream), local_batch - n_extra),
                 (extra, stream_seed(config.seed, stream, extra=True), n_extra)]
        batched = [_shuffled_batches(part, part_seed, rows, stream, config)
                   for part, part_seed, rows in parts if rows]
        # Two infinite streams of unequal batch counts: both cut to a plain stream's count.
        ds = batched[0] if len(batched) == 1 else ZipMapDataset(
            [b[:sys.maxsize // local_batch] for b in batched]).map(_concatenate)
        per_stream.append(ds[process_index::process_count])
    names = tuple(streams)
    zipped = ZipMapDataset(per_stream).map(lambda batches: dict(zip(names, batches)))
    iter_ds = zipped.to_iter_dataset()
    if config.data.worker_count > 0:
        _allow_workers_without_absl_app()
        iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=config.data.worker_count,
            per_worker_buffer_size=config.data.worker_buffer_size),
            worker_init_fn=_die_with_parent)
    return iter_ds


def steps_per_epoch(config, splits: DataSplits) -> int:
    """An epoch is one pass over the unlabelled classification set (docs/multimix.md,
    Training): its films over ``data.per_stream_batch``."""
    epoch_source = splits.cls_unlabeled if config.tasks.classification else splits.seg_unlabeled
    if epoch_source is None:
        epoch_source = splits.cls_labeled if config.tasks.classification else splits.seg_labeled
    return max(1, len(epoch_source) // config.data.per_stream_batch)


def _die_with_parent(worker_index: int = 0, worker_count: int = 0) -> None:
    """Grain worker start (Grain has no option for it): a daemon thread ends the worker once
    the training process is gone (the worker is re-parented), so no worker outlives a
    ``kill -9`` of it. (The kernel's PR_SET_PDEATHSIG would fire when the spawning thread
    ends, not the process.)"""
    import os
    import threading
    import time
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _allow_workers_without_absl_app() -> None:
    """Grain's worker start reads an absl flag (grain_enable_multiprocess_worker_profiling);
    outside ``absl.app.run`` (tests, notebooks, scripts) that raises UnparsedFlagAccessError.
    There, take every flag's default, as Grain's own tests do."""
    from absl import flags
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def eval_batches(source, batch_size: int, image_size: int) -> Iterator[dict]:
    """Every example exactly once, in order, in fixed-size batches; the last batch is padded
    and ``valid`` marks the real entries (Scenic's batch_mask)."""
    n = len(source)
    for start in range(0, n, batch_size):
        rows = [source[i] for i in range(start, min(start + batch_size, n))]
        batch = {"image": np.stack([_as_hw_uint8(r["image"], image_size) for r in rows])[..., None]}
        if "label" in rows[0]:
            batch["label"] = np.asarray([r["label"] for r in rows], np.int32)
        if "mask" in rows[0]:
            batch["mask"] = np.stack([_as_hw_uint8(r["mask"], image_size, "mask") for r in rows])[..., None]
        real = len(rows)
        batch["valid"] = np.arange(batch_size) < real
        if real < batch_size:
            batch = {k: (v if k == "valid" else
                         np.concatenate([v, np.zeros((batch_size - real,) + v.shape[1:], v.dtype)]))
                     for k, v in batch.items()}
        yield batch
