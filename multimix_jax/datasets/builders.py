"""TFDS ArrayRecord builders (no TensorFlow) of the paper's four sets (docs/multimix.md, Data).

``build_dataset(NAME, manual_dir, data_dir, S)`` writes ``data_dir/multimix_NAME/Spx/1.1.0``
(``image`` uint8 (S, S, 1), ``key``, and ``label`` int64 or ``mask`` uint8 {0, 1});
``open_dataset(NAME, data_dir, S)`` reads it. Each builder's settings (splits, seed, NIH
subsampling, JSRT's half-size masks) are fixed class constants. The source folder and its
:func:`content_fingerprint` are kept in ``info.metadata``: a build from another folder (or
changed files) into the same place is refused unless ``overwrite``. Builds are written under
``data_dir/.incomplete-*`` and moved into place when complete; the next build removes what a
killed one left.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tensorflow_datasets as tfds

from multimix_jax.datasets import layouts
from multimix_jax.datasets.folders import load_records
from multimix_jax.datasets.image_io import is_ignorable
from multimix_jax.errors import DataError
from multimix_jax.splitting import split_groups

log = logging.getLogger("multimix_jax")


def content_fingerprint(root: os.PathLike | str) -> str:
    """sha256 of what a build reads under ``root``: each file's path relative to ``root``, size
    and content hash. Junk (hidden files such as .DS_Store, Thumbs.db, __MACOSX) and mtimes do
    not count, so a ``cp -r`` copy of the same download is the same source."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(is_ignorable(part) for part in rel.parts):
            continue
        with open(path, "rb") as f:
            content = hashlib.file_digest(f, "sha256").hexdigest()
        digest.update(f"{rel.as_posix()}\0{path.stat().st_size}\0{content}\n".encode(
            "utf-8", "surrogateescape"))
    return digest.hexdigest()


def seeded_split(keys: Sequence[str], val_fraction: float, test_fraction: float,
                 seed: int = 0) -> dict[str, list[str]]:
    """Test, validation and train cut by :func:`multimix_jax.splitting.split_groups` (one
    group per key: these sets have one film per patient) from ``round(n * fraction)`` films,
    at least one when n allows."""
    keys = sorted(keys)
    n_val, n_test = round(len(keys) * val_fraction), round(len(keys) * test_fraction)
    n_val += val_fraction > 0 and n_val == 0 and len(keys) - n_test >= 2
    n_test += test_fraction > 0 and n_test == 0 and len(keys) - n_val >= 2
    test, val, train = split_groups(keys, [n_test, n_val], seed)
    parts = {"train": train, "validation": val, "test": test}
    return {split: [keys[i] for i in part] for split, part in parts.items() if len(part)}


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared machinery; subclasses set ``name``, ``READ`` (the reader of the download's
    layout) and the constants below."""

    VERSION = tfds.core.Version("1.1.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the downloaded folder as --manual_dir."
    KIND = "classification"
    SPLIT_SEED = 0
    VAL_FRACTION = TEST_FRACTION = 0.0  # both 0: the folder's own splits
    MASKS_SAME_ASPECT = False  # True: masks may differ from their image in size, not aspect
    READ: Callable[[Path], tuple[list[layouts.Record], layouts.SkipSummary]]
    source: dict[str, str] = {}

    def _info(self) -> tfds.core.DatasetInfo:
        s = int(self.builder_config.name.removesuffix("px"))
        image = tfds.features.Tensor(shape=(s, s, 1), dtype=np.uint8)
        feats = {"image": image, "key": tfds.features.Text()}
        if self.KIND == "segmentation":
            feats["mask"] = image
        else:
            feats["label"] = tfds.features.Tensor(shape=(), dtype=np.int64)
        return tfds.core.DatasetInfo(
            builder=self, description=f"{self.__doc__}\nmanual_dir: {self.READ.__doc__}",
            features=tfds.features.FeaturesDict(feats), metadata=tfds.core.MetadataDict())

    def _splits(self, records, summary) -> dict[str, list[layouts.Record]]:
        """The folder's own splits, or a seeded split by the class's fractions."""
        if not self.VAL_FRACTION and not self.TEST_FRACTION:
            return {s: [r for r in records if r.split == s]
                    for s in sorted({r.split for r in records})}
        by_key = {r.key: r for r in records}
        parts = seeded_split(list(by_key), self.VAL_FRACTION, self.TEST_FRACTION,
                             self.SPLIT_SEED)
        return {s: [by_key[k] for k in keys] for s, keys in parts.items()}

    def _split_generators(self, dl_manager):
        records, summary = self.READ(Path(os.fspath(dl_manager.manual_dir)))
        splits = self._splits(records, summary)
        self.info.metadata.update(**self.source, split_sizes={s: len(r) for s, r in splits.items()},
                                  skipped=dict(summary), skipped_examples=summary.examples)
        log.info("%s: %s; %s", self.name, self.info.metadata["split_sizes"], summary)
        return {s: self._generate_examples(r) for s, r in splits.items()}

    def _generate_examples(self, records):
        size = int(self.builder_config.name.removesuffix("px"))
        arrays = load_records(records, size, kind=self.KIND,
                              masks_same_aspect=self.MASKS_SAME_ASPECT)
        for i, r in enumerate(records):
            example = {"image": arrays["image"][i, ..., None], "key": r.key}
            if self.KIND == "segmentation":
                example["mask"] = arrays["mask"][i, ..., None]
            else:
                example["label"] = arrays["label"][i]
            yield r.key, example


class Kermany(_Builder, skip_registration=True):
    """Kermany et al. 2018 pediatric chest X-rays, official splits."""

    name = "multimix_kermany"
    READ = staticmethod(layouts.read_kermany)


class Jsrt(_Builder, skip_registration=True):
    """JSRT (raw 12-bit, inverted) with SCR lung masks; 111/13/123 as in the paper."""

    name = "multimix_jsrt"
    KIND = "segmentation"
    VAL_FRACTION, TEST_FRACTION = 13 / 247, 123 / 247
    MASKS_SAME_ASPECT = True  # the SCR masks are 1024 px for the 2048 px images
    READ = staticmethod(layouts.read_jsrt)


class Montgomery(_Builder, skip_registration=True):
    """Montgomery County set with lung masks; 93/10/35 as in the paper."""

    name = "multimix_montgomery"
    KIND = "segmentation"
    VAL_FRACTION, TEST_FRACTION = 10 / 138, 35 / 138
    READ = staticmethod(layouts.read_montgomery)


class NihPneumonia(_Builder, skip_registration=True):
    """NIH ChestX-ray14, Pneumonia vs No Finding, NORMAL subsampled to 2754 as in the paper;
    test split only."""

    name = "multimix_nih_pneumonia"
    MAX_NORMAL = 2754
    READ = staticmethod(layouts.read_nih_pneumonia)

    def _splits(self, records, summary):
        """Test split only, NORMAL subsampled (seeded) to ``MAX_NORMAL``."""
        normal = [r.key for r in records if r.label == 0]
        if len(normal) > self.MAX_NORMAL:
            rng = np.random.default_rng(self.SPLIT_SEED)
            kept = {normal[i] for i in rng.choice(len(normal), self.MAX_NORMAL, replace=False)}
            for r in records:
                if r.label == 0 and r.key not in kept:
                    summary.add("normal_subsampled", r.image_path)
            records = [r for r in records if r.label != 0 or r.key in kept]
        return {"test": records}


BUILDERS = {b.name.removeprefix("multimix_"): b for b in (Kermany, Jsrt, Montgomery, NihPneumonia)}


def _make_builder(name: str, data_dir: os.PathLike | str, size: int = 256) -> _Builder:
    """The builder of dataset ``name`` at ``size`` in ``data_dir`` (built or not)."""
    cls = BUILDERS.get(name.removeprefix("multimix_"))
    if cls is None:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(BUILDERS)}")
    if int(size) <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return cls(data_dir=os.fspath(data_dir), file_format="array_record",
               config=tfds.core.BuilderConfig(name=f"{int(size)}px"))


def open_dataset(name: str, data_dir: os.PathLike | str, size: int) -> _Builder:
    """A built dataset; DataError naming the command that builds it if there is none."""
    builder = _make_builder(name, data_dir, size)
    if not builder.is_prepared():
        raise DataError(data_dir, f"holds no {name} dataset at {size} px: build it with "
                        f"scripts/build_dataset.py {name} --manual_dir DIR --data_dir {data_dir} "
                        f"--size {size}")
    return builder


def build_dataset(name: str, manual_dir: os.PathLike | str, data_dir: os.PathLike | str,
                  size: int = 256, *, overwrite: bool = False) -> _Builder:
    """Builds dataset ``name`` from ``manual_dir`` (or returns the identical one already
    built); see the module docstring. Raises DataError, leaving ``data_dir`` as it was."""
    manual_dir, data_dir = (Path(d).expanduser().absolute() for d in (manual_dir, data_dir))
    if not manual_dir.is_dir() or not any(manual_dir.iterdir()):
        raise DataError(manual_dir, "manual_dir is missing, not a folder or empty")
    builder = _make_builder(name, data_dir, size)
    source = {"source": str(manual_dir), "fingerprint": content_fingerprint(manual_dir)}
    if builder.is_prepared() and not overwrite:
        md = builder.info.metadata
        if md.get("fingerprint") == source["fingerprint"]:
            return builder
        raise DataError(builder.data_path, f"already holds {name} built from {md.get('source')}; "
                        f"this build is from {manual_dir} (or its files changed): pass "
                        "--overwrite to replace it, or choose another --data_dir")
    created = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*data_dir.glob(".incomplete-*"), *data_dir.glob("multimix_*/*/incomplete.*")]:
        shutil.rmtree(stale, ignore_errors=True)  # left by killed builds
    tmp = Path(tempfile.mkdtemp(prefix=".incomplete-", dir=data_dir))
    try:
        fresh = _make_builder(name, tmp, size)
        fresh.source = source
        fresh.download_and_prepare(
            download_dir=os.fspath(tmp / "downloads"), file_format="array_record",
            download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
        final = Path(os.fspath(builder.data_path))
        shutil.rmtree(final, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(os.fspath(fresh.data_path), final)
    except BaseException:
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _make_builder(name, data_dir, size)
