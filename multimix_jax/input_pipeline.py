"""Grain input pipelines: the five training streams and the evaluation sets
(docs/multimix.md, Training; Training loop and input pipeline).

Images travel as uint8 (N, S, S, 1) and are normalised to [-1, 1] on the device
(``steps.normalize_batch``); masks as uint8 {0, 1}; labels as int32.

Randomness: every stream is ``EpochShuffle(MapDataset.source(...).seed(s)).repeat()`` followed
by ``random_map`` BEFORE ``to_iter_dataset()``, so each element's augmentation depends only
on (seed, stream, position): the same seed gives the same batches, with or without worker
processes, and the iterator state (a position) can be checkpointed and restored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sys
from typing import Any, Iterator, Mapping, Sequence

import grain
import numpy as np
from grain.experimental import ZipMapDataset

from multimix_jax import augment, splitting
from multimix_jax.datasets import layouts
from multimix_jax.names import (CLASSIFICATION, CLS_LABELED, CLS_UNLABELED, SEG_LABELED,
                                SEG_UNLABELED, SEGMENTATION, STREAMS)
from multimix_jax.errors import UserError
from multimix_jax.synthetic import SyntheticCXR

log = logging.getLogger("multimix_jax")
# Disjoint index ranges of the synthetic generator for the held-out test sets.
SYNTHETIC_TEST_OFFSET = 1_000_000


# --------------------------------------------------------------------------- sources
class ArraySource:
    """Random-access source over in-memory arrays with a common first axis; ``keys`` names
    each film (its path relative to the folder; an index for generated data)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], keys: Sequence[str] | None = None):
        lengths = {len(v) for v in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"arrays of different lengths: { {k: len(v) for k, v in arrays.items()} }")
        self._arrays = dict(arrays)
        self._length = lengths.pop()
        self.keys = np.asarray([str(i) for i in range(self._length)] if keys is None else keys,
                               dtype=str)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict:
        return {k: v[index] for k, v in self._arrays.items()}

    def __repr__(self) -> str:
        return f"ArraySource(n={self._length}, keys={sorted(self._arrays)})"


class KeyedSource:
    """A random-access source (a TFDS data source) whose examples carry a 'key'; ``keys``
    reads them once."""

    def __init__(self, source):
        self._source, self._keys = source, None

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict:
        return self._source[index]

    @property
    def keys(self) -> np.ndarray:
        if self._keys is None:
            raw = [self._source[i]["key"] for i in range(len(self._source))]
            self._keys = np.asarray([k.decode() if isinstance(k, bytes) else str(k) for k in raw])
        return self._keys


def source_keys(source) -> np.ndarray:
    """Each film's key (``keys`` of the project's sources; else the position)."""
    keys = getattr(source, "keys", None)
    return np.asarray(keys if keys is not None else [str(i) for i in range(len(source))], str)


def source_groups(source) -> np.ndarray:
    """Each film's patient group: the ``groups`` of a source that carries them
    (:class:`GroupedSource`, the shifted copies of one), else one group per film (its key)."""
    groups = getattr(source, "groups", None)
    return np.asarray(groups if groups is not None else source_keys(source), str)


class GroupedSource:
    """``source`` with each film's patient group (``groups``): the films that the cross-fitted
    folds (validation.py) and the bootstrap (intervals.py) keep together."""

    def __init__(self, source, groups: Sequence[str]):
        if len(groups) != len(source):
            raise ValueError(f"{len(groups)} groups for {len(source)} films")
        self._source, self.groups = source, np.asarray(groups, str)

    @property
    def keys(self) -> np.ndarray:
        return source_keys(self._source)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict:
        return self._source[index]

    def __repr__(self) -> str:
        return f"GroupedSource({self._source!r}, groups={len(set(self.groups))})"


def grouped_by(source, rule: str, what: str = "group") -> GroupedSource:
    """``source`` with its films' patient groups under ``rule`` (``layouts.patient_groups``;
    ``what`` names the config field in its error)."""
    return GroupedSource(source, layouts.patient_groups(source_keys(source), rule, what))


class SubsetSource:
    """The examples of ``source`` at ``indices`` (a label-budget or validation split)."""

    def __init__(self, source, indices: Sequence[int]):
        self._source, self._indices = source, np.asarray(indices, np.int64)

    @property
    def keys(self) -> np.ndarray:
        return source_keys(self._source)[self._indices]

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> dict:
        return self._source[int(self._indices[index])]

    def __repr__(self) -> str:
        return f"SubsetSource({self._source!r}, n={len(self)})"


def load_source(spec, task: str, image_size: int, *, split: str | None = None,
                synthetic_offset: int = 0, synthetic_seed: int = 0,
                pneumonia_fraction: float = 0.5, num_examples: int | None = None):
    """A random-access source from a data spec (``config.data.cls`` / ``.seg`` / extra sets).

    kinds: 'synthetic' (embedded generator), 'folder' (a class-subfolder or images/+masks/
    folder, read into memory), 'tfds' (a dataset built by ``scripts/build_dataset.py``).
    ``split``: a folder with split sub-folders (``ROOT/<split>/<class>/*``) gives only that
    split (None: all of it); a folder without them is all one split; tfds: ``split``, else
    the spec's 'split', else 'train'.
    """
    kind = spec.get("kind", "synthetic")
    if kind == "synthetic":
        n = num_examples if num_examples is not None else spec["num_examples"]
        generator = SyntheticCXR(n, seed=synthetic_seed, size=image_size,
                                 pneumonia_fraction=pneumonia_fraction, offset=synthetic_offset)
        return materialize(generator, keys=[f"synthetic/{synthetic_offset + i}" for i in range(n)])
    if kind == "unlabeled_folder":  # every image below the folder, labels ignored
        from multimix_jax.datasets.folders import load_folder
        arrays = load_folder(spec["path"], "unlabeled", image_size)
        return ArraySource({"image": arrays["image"]}, keys=arrays["key"])
    if kind == "folder":
        from multimix_jax.datasets.folders import load_folder
        if not spec.get("path"):
            raise ValueError(f"data spec {dict(spec)} of kind 'folder' needs a path")
        arrays = load_folder(spec["path"], task, image_size)  # de-duplicated across splits, cached
        folder_splits = arrays.pop("split", None)
        if folder_splits is not None and split is not None:  # never pool train/val/test
            from multimix_jax.datasets.layouts import SPLIT_ALIASES
            keep = folder_splits == SPLIT_ALIASES.get(split.lower(), split)
            if not keep.any():
                raise ValueError(f"{spec['path']} has no split {split!r}; its splits are "
                                 f"{sorted(set(folder_splits.tolist()))}")
            arrays = {k: v[keep] for k, v in arrays.items()}
        elif folder_splits is None and split not in (None, "train"):
            raise ValueError(f"{spec['path']} has no split sub-folders, so it has no {split!r} "
                             "split: hold out a count instead (e.g. data.val_cls=500)")
        keys = arrays.pop("key")
        return ArraySource(arrays, keys=keys)
    if kind == "tfds":
        from multimix_jax.datasets.builders import open_dataset
        builder = open_dataset(spec["name"], spec["data_dir"], image_size)
        # An explicit ``split`` (a validation or test request) wins over the spec's own
        # 'split' key, which names the split the spec is *trained* on.
        split = split or spec.get("split") or "train"
        if split not in builder.info.splits:
            raise ValueError(f"{builder.data_path} has no split {split!r}; its splits are "
                             f"{sorted(builder.info.splits)}")
        return KeyedSource(builder.as_data_source(split=split))
    raise ValueError(f"unknown data kind {kind!r} in {dict(spec)}; use synthetic, folder or tfds")


def materialize(source, keys: Sequence[str] | None = None) -> ArraySource:
    """Generate every example once and keep the arrays (epochs then cost only augmentation)."""
    rows = [source[i] for i in range(len(source))]
    return ArraySource({k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}, keys)


def balanced_oversample(indices: np.ndarray, labels: Sequence[int], seed: int = 0) -> np.ndarray:
    """``indices`` with every class topped up to the largest class's count, so the labelled
    stream sees each class equally often whatever the pool's prior (docs/multimix.md, Recipe
    for unseen films): each film of a class appears ``most // n`` times and a seeded draw
    without replacement picks the ``most % n`` films that appear once more."""
    labels, rng = np.asarray(labels), np.random.default_rng(seed)
    per_class = [indices[labels == c] for c in np.unique(labels)]
    most = max(len(c) for c in per_class)
    topped = [np.concatenate([np.repeat(c, most // len(c)),
                              rng.choice(c, most % len(c), replace=False)]) for c in per_class]
    return np.sort(np.concatenate(topped))


@dataclasses.dataclass
class DataSplits:
    """Training streams' sources, the extra unlabelled pools and the held-out validation sets;
    ``grouping``: each task's patient-grouping rule (short task name -> rule)."""

    cls_labeled: Any = None
    cls_unlabeled: Any = None
    seg_labeled: Any = None
    seg_unlabeled: Any = None
    cls_val: Any = None
    seg_val: Any = None
    cls_unlabeled_extra: Any = None
    seg_unlabeled_extra: Any = None
    grouping: dict = dataclasses.field(default_factory=dict)

    def sources(self) -> dict:
        """name -> source of every split (None where there is none)."""
        # Not dataclasses.asdict: it deep-copies every source (~1 GB at the default 256 px).
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "grouping"}

    def groups(self, name: str) -> list[str]:
        """The patient group of each film of split ``name`` (the extra pools: one per film)."""
        rule = self.grouping.get(name.split("_")[0], "film") if "extra" not in name else "film"
        return layouts.patient_groups(source_keys(self.sources()[name]), rule)

    def grouped(self, name: str) -> GroupedSource:
        """Split ``name`` with its films' patient groups (:meth:`groups`)."""
        return GroupedSource(self.sources()[name], self.groups(name))

    def summary(self) -> dict:
        """name -> {'films': distinct films, 'groups': distinct patients}, plus 'stream': the
        stream's length where films repeat in it (``data.balance_labeled``), so a label
        budget reads as the films it labels; and the grouping rule of each task."""
        out = {}
        for name, source in self.sources().items():
            if source is None:
                out[name] = {"films": 0, "groups": 0}
                continue
            films = len(set(source_keys(source)))
            out[name] = {"films": films, "groups": len(set(self.groups(name)))}
            if films != len(source):
                out[name]["stream"] = len(source)
        return {**out, "grouping": dict(self.grouping)}

    def fingerprints(self) -> dict:
        """name -> {'films', 'sha256', 'entries'}: each split's distinct films as
        ``key<TAB>content digest`` (the decoded pixels and label or mask), so that a file
        added, removed, moved between splits or with other content changes it."""
        out = {}
        for name, source in self.sources().items():
            if source is None:
                continue
            keys = source_keys(source)
            entries = sorted({f"{k}\t{_content_digest(source[i])}" for i, k in enumerate(keys)})
            out[name] = {"films": len(entries), "sha256": splitting.keys_fingerprint(entries),
                         "entries": entries}
        return out


def _content_digest(example: Mapping) -> str:
    h = hashlib.blake2b(digest_size=8)
    for field in ("image", "label", "mask"):
        if field in example:
            h.update(np.ascontiguousarray(np.asarray(example[field])).tobytes())
    return h.hexdigest()


def make_splits(config) -> DataSplits:
    """Validation first (never trained on), then the label budgets from the rest, each
    drawn by whole patients (:mod:`multimix_jax.splitting`; ``data.cls.group``), and the
    extra unlabelled pools (``data.cls.unlabeled_extra``; never validated on).

    ``data.val_cls`` / ``data.val_seg``: a count held out of the training set by seed, or
    'split:NAME' to use the dataset's own split NAME (e.g. a TFDS 'validation' split).
    """
    data, splits = config.data, DataSplits()
    size, seed = data.image_size, config.data.split_seed
    tasks = ((CLASSIFICATION, "cls", data.cls, data.val_cls, config.labels.cls, 0),
             (SEGMENTATION, "seg", data.seg, data.val_seg, config.labels.seg, 1))
    for task, short, spec, val, budget, stream_id in tasks:
        if not config.tasks.get(task):
            continue
        # Every source of the task, its extra unlabelled pool too, loads through this one call.
        load = lambda source_spec, split: load_source(
            source_spec, task, size, split=split, synthetic_seed=data.synthetic_seed + stream_id,
            pneumonia_fraction=data.synthetic_pneumonia_fraction)
        rule = spec.get("group", "auto")
        splits.grouping[short] = rule
        group_of = lambda source: layouts.patient_groups(source_keys(source), rule,
                                                         f"data.{short}.group")
        source = load(spec, spec.get("split", "train"))
        if isinstance(val, str) and val.startswith("split:"):
            if spec.get("kind", "synthetic") == "synthetic":  # it would repeat the train set
                raise ValueError(f"data.val_{short}={val!r}: synthetic data have no named "
                                 "splits; hold out a count instead")
            val_source, train = load(spec, val[len("split:"):]), source
        else:
            val_idx, train_idx = splitting.split_off(group_of(source), val, seed * 1000 + stream_id,
                                                     f"data.val_{short}", hold_out=True)
            val_source, train = SubsetSource(source, val_idx), SubsetSource(source, train_idx)
        labeled, unlabeled = splitting.split_off(group_of(train), budget,
                                                 seed * 1000 + 10 + stream_id, f"labels.{short}")
        if task == CLASSIFICATION and data.balance_labeled:
            labeled = balanced_oversample(labeled, [train[int(i)]["label"] for i in labeled],
                                          seed * 1000 + 20 + stream_id)
        setattr(splits, f"{short}_val", val_source)
        setattr(splits, f"{short}_labeled", SubsetSource(train, labeled))
        setattr(splits, f"{short}_unlabeled", SubsetSource(train, unlabeled))
        if spec.get("unlabeled_extra"):  # labels ignored: the split and seeds do not apply
            setattr(splits, f"{short}_unlabeled_extra", load(
                {"kind": "unlabeled_folder", "path": spec["unlabeled_extra"]}, None))
    log.info("splits (films / patients): %s", splits.summary())
    return splits


def extra_sources(config, extra: Mapping[str, tuple[str, str]]) -> dict:
    """name -> (task, source) of extra evaluation folders given as name -> (task, path), each
    read once, all of it (a bad image stops here, naming the file)."""
    return {name: (task, grouped_by(load_source({"kind": "folder", "path": path}, task,
                                                config.data.image_size, split=None), "auto"))
            for name, (task, path) in extra.items()}


def eval_sources(config, val_sets: Mapping[str, tuple] | None = None,
                 extra: Mapping[str, tuple] | None = None) -> dict:
    """name -> (task, source): the validation sets ``val_sets`` (``validation.validation_sets``),
    ``config.data.eval_sets`` (their 'test' split unless they name one) and the ``extra``
    folders already read by :func:`extra_sources`."""
    data = config.data
    specs = {name: spec for name, spec in data.eval_sets.items()
             if config.tasks.get(spec["task"])}  # e.g. no classification sets for the U-Net
    sets = dict(val_sets or {})
    for name, spec in specs.items():
        task = spec["task"]
        stream_id = 0 if task == CLASSIFICATION else 1
        source = load_source(
            spec, task, data.image_size, split=spec.get("split", "test"),
            synthetic_offset=SYNTHETIC_TEST_OFFSET, synthetic_seed=data.synthetic_seed + stream_id,
            pneumonia_fraction=data.synthetic_pneumonia_fraction)
        sets[name] = (task, grouped_by(source, spec.get("group", "auto"),
                                       f"data.eval_sets.{name}.group"))
    return {**sets, **(extra or {})}


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
    (docs/multimix.md, Recipe for unseen films). All off: the original's augmentation.
    """

    def __init__(self, stream: str, image_size: int, augment_config):
        self.stream, self.size = stream, image_size
        self.pad = int(round(augment_config.pad_fraction * image_size))
        self.num_ops = augment_config.randaugment_num_ops
        self.magnitude = augment_config.randaugment_magnitude
        self.seg_joint = augment_config.seg_joint
        self.acquisition = augment_config.acquisition
        self.opacity_prob = augment_config.opacity_prob
        self.occlusion_prob = augment_config.occlusion_prob

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
            return {"image": image[..., None]}
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
            .random_map(StreamTransform(stream, config.data.image_size, config.augment))
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
