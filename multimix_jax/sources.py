"""Films as indexable sources, and which of them each training stream and evaluation set
holds (docs/multimix.md, Splits by patient; Extra unlabelled films): the validation hold-out
and label budgets drawn by patient (:mod:`multimix_jax.splitting`), the balanced labelled
set, the extra unlabelled pools and the evaluation sets. Images are uint8 arrays as the
loaders (:mod:`multimix_jax.datasets`) and the synthetic generator give them; the Grain
streams that batch and augment them are :mod:`multimix_jax.input_pipeline`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Any, Mapping, Sequence

import numpy as np

from multimix_jax import splitting
from multimix_jax.datasets import layouts
from multimix_jax.names import CLASSIFICATION, SEGMENTATION
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
