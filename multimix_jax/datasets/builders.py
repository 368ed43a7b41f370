"""TFDS ArrayRecord builders (no TensorFlow) of the chest X-ray sets (docs/multimix.md, Data).

``build_dataset(NAME, manual_dir, data_dir, S)`` writes ``data_dir/multimix_NAME/Spx/1.0.0``
(``image`` uint8 (S, S, 1), ``key``, and ``label`` int64 or ``mask`` uint8 {0, 1} with
``abnormal``: Montgomery/Shenzhen TB 1 / normal 0, else -1); ``open_dataset(NAME, data_dir, S)`` reads it. The
options (each builder's ``DEFAULTS`` updated), the source folder and its :func:`fingerprint`
are kept in ``info.metadata``: a build from other files or with other options into the same
place is refused unless ``overwrite``. Builds are written under ``data_dir/.incomplete-*`` and
moved into place when complete; the next build removes what a killed one left.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds

from multimix_jax.datasets import layouts
from multimix_jax.datasets.folders import MASK_SIZE_POLICIES, fingerprint, load_records
from multimix_jax.datasets.image_io import DataError, to_hw

log = logging.getLogger("multimix_jax")


def seeded_split(keys: Sequence[str], val_fraction: float, test_fraction: float = 0.0,
                 seed: int = 0, strata: Sequence[Any] | None = None) -> dict[str, list[str]]:
    """Sorted keys permuted by ``default_rng(seed)`` and cut into test, validation, train
    (``round(n * fraction)``, at least one when n allows), within each stratum if given."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"bad split fractions: val_fraction={val_fraction}, "
                         f"test_fraction={test_fraction} (each in [0, 1), sum below 1)")
    groups: dict[Any, list[str]] = {}
    for k, s in sorted(zip(keys, strata if strata is not None else [None] * len(keys))):
        groups.setdefault(s, []).append(k)
    rng, out = np.random.default_rng(seed), {"train": [], "validation": [], "test": []}
    for s in sorted(groups, key=repr):
        g = [groups[s][i] for i in rng.permutation(len(groups[s]))]
        n_val, n_test = round(len(g) * val_fraction), round(len(g) * test_fraction)
        n_val += val_fraction > 0 and n_val == 0 and len(g) - n_test >= 2
        n_test += test_fraction > 0 and n_test == 0 and len(g) - n_val >= 2
        out["test"] += g[:n_test]
        out["validation"] += g[n_test:n_test + n_val]
        out["train"] += g[n_test + n_val:]
    return {k: sorted(v) for k, v in out.items() if v}


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared machinery; subclasses set name, KIND, LAYOUT, DEFAULTS and ``_read``."""

    VERSION = tfds.core.Version("1.0.0")
    KIND, LAYOUT = "classification", ""
    DEFAULTS: dict[str, Any] = {"split_seed": 0}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the downloaded folder as --manual_dir."
    options: dict[str, Any] = {}
    source: dict[str, str] = {}

    def _info(self) -> tfds.core.DatasetInfo:
        s = int(self.builder_config.name.removesuffix("px"))
        image = tfds.features.Tensor(shape=(s, s, 1), dtype=np.uint8)
        feats = {"image": image, "key": tfds.features.Text()}
        scalar = tfds.features.Tensor(shape=(), dtype=np.int64)
        if self.KIND == "classification":
            feats["label"] = scalar
        else:
            feats.update(mask=image, abnormal=scalar)
        return tfds.core.DatasetInfo(
            builder=self, description=f"{self.__doc__}\nLayout of manual_dir: {self.LAYOUT}",
            features=tfds.features.FeaturesDict(feats), metadata=tfds.core.MetadataDict())

    def _splits(self, records, summary) -> dict[str, list[layouts.Record]]:
        """The folder's own splits when every record has one, else a seeded split."""
        if all(r.split for r in records):
            return {s: [r for r in records if r.split == s]
                    for s in sorted({r.split for r in records})}
        by_key, o = {r.key: r for r in records}, self.options
        strata = [r.label for r in records] if self.KIND == "classification" else None
        parts = seeded_split(list(by_key), o["val_fraction"], o["test_fraction"],
                             o["split_seed"], strata)
        return {s: [by_key[k] for k in keys] for s, keys in parts.items()}

    def _split_generators(self, dl_manager):
        records, summary = self._read(Path(os.fspath(dl_manager.manual_dir)))
        splits = self._splits(records, summary)
        self.info.metadata.update(options=self.options, **self.source,
                                  split_sizes={s: len(r) for s, r in splits.items()},
                                  skipped=dict(summary), skipped_examples=summary.examples)
        log.info("%s: %s; %s", self.name, self.info.metadata["split_sizes"], summary)
        return {s: self._generate_examples(r) for s, r in splits.items()}

    def _generate_examples(self, records):
        size = int(self.builder_config.name.removesuffix("px"))
        arrays = load_records(records, size, kind=self.KIND,
                              jsrt_shape=self.options.get("jsrt_shape", 2048),
                              mask_size_policy=self.options.get("mask_size_policy", "error"))
        for i, r in enumerate(records):
            ex = {"image": arrays["image"][i, ..., None], "key": r.key}
            if self.KIND == "classification":
                ex["label"] = arrays["label"][i]
            else:
                ex.update(mask=arrays["mask"][i, ..., None], abnormal=-1 if r.abnormal is None
                          else r.abnormal)
            yield r.key, ex


_SEEDED = {"split_seed": 0, "val_fraction": 0.1, "test_fraction": 0.0}


def _builder(name: str, doc: str, kind: str, layout: str, read, defaults: dict,
             base: type = _Builder) -> type[_Builder]:
    """A builder class (TFDS needs one per dataset name) reading with ``read(root, options)``."""
    return type(name, (base,), {"__doc__": doc, "name": f"multimix_{name}", "KIND": kind,
                                "LAYOUT": layout, "DEFAULTS": defaults,
                                "_read": lambda self, root: read(root, self.options)},
                skip_registration=True)


class _NihBuilder(_Builder, skip_registration=True):
    def _splits(self, records, summary):
        """Test split only, NORMAL subsampled (seeded) to ``max_normal`` (0: all)."""
        normal = [r.key for r in records if r.label == 0]
        cap = self.options["max_normal"]
        if 0 < cap < len(normal):
            rng = np.random.default_rng(self.options["split_seed"])
            dropped = set(normal) - {normal[i] for i in rng.choice(len(normal), cap, replace=False)}
            for r in records:
                if r.key in dropped:
                    summary.add("normal_subsampled", r.image_path)
            records = [r for r in records if r.key not in dropped]
        return {"test": records}


_SEG = "segmentation"
BUILDERS = {b.name.removeprefix("multimix_"): b for b in (
    _builder("kermany", "Kermany et al. 2018 pediatric chest X-rays, official splits.",
             "classification", "chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}/*",
             lambda root, o: layouts.read_kermany(root), {}),
    _builder("jsrt", "JSRT (raw 12-bit, inverted) with SCR lung masks; 111/13/123 as in the paper.",
             _SEG, "All247images/*.IMG and SCR .../{left lung,right lung}/*.gif",
             lambda root, o: layouts.read_jsrt(root),
             {**_SEEDED, "val_fraction": 13 / 247, "test_fraction": 123 / 247,
              "mask_size_policy": "same_aspect", "jsrt_shape": 2048}),
    _builder("montgomery", "Montgomery County set with lung masks; 93/10/35 as in the paper.",
             _SEG, "CXR_png/*.png and ManualMask/{leftMask,rightMask}/*.png",
             lambda root, o: layouts.read_montgomery(root),
             {**_SEEDED, "val_fraction": 10 / 138, "test_fraction": 35 / 138,
              "mask_size_policy": "error"}),
    _builder("shenzhen", "Shenzhen set, the images with a lung mask; 70/10/20 split.",
             _SEG, "CXR_png/*.png and mask/*_mask.png", lambda root, o: layouts.read_shenzhen(root),
             {**_SEEDED, "test_fraction": 0.2, "mask_size_policy": "error"}),
    _builder("nih_pneumonia", "NIH ChestX-ray14, Pneumonia vs No Finding, NORMAL subsampled to "
             "2754 as in the paper; test split only.", "classification",
             "images*/**/*.png and Data_Entry_2017.csv",
             lambda root, o: layouts.read_nih_pneumonia(root),
             {"split_seed": 0, "max_normal": 2754}, base=_NihBuilder),
    _builder("generic_classification_folder", "A folder of classified chest X-rays.",
             "classification", "ROOT/<class>/* or ROOT/{train,val,test}/<class>/*",
             lambda root, o: layouts.read_classification_folder(
                 root, o["class_names"], allow_unknown=o["allow_unknown"]),
             {**_SEEDED, "class_names": list(layouts.CLASS_NAMES), "allow_unknown": False}),
    _builder("generic_segmentation_folder", "A folder of chest X-rays with lung masks.", _SEG,
             "ROOT/images/* and ROOT/masks/* (a mask may end in _mask)",
             lambda root, o: layouts.read_segmentation_folder(root, strict=o["strict"]),
             {**_SEEDED, "strict": False, "mask_size_policy": "error"}),
)}


def _options(cls: type[_Builder], given: dict[str, Any]) -> dict[str, Any]:
    """The builder's DEFAULTS updated with the given (not None) options, JSON-normalised."""
    given = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(given) - set(cls.DEFAULTS))
    if unknown:
        raise ValueError(f"{cls.name} does not take the option(s) {unknown}; "
                         f"it takes {sorted(cls.DEFAULTS)}")
    if given.get("mask_size_policy", "error") not in MASK_SIZE_POLICIES:
        raise ValueError(f"mask_size_policy must be one of {MASK_SIZE_POLICIES}, "
                         f"got {given['mask_size_policy']!r}")
    return json.loads(json.dumps({**cls.DEFAULTS, **given}))


def make_builder(name: str, data_dir: os.PathLike | str, size: int = 256,
                 **options: Any) -> _Builder:
    """The builder of dataset ``name`` at ``size`` in ``data_dir`` (built or not)."""
    cls = BUILDERS.get(name.removeprefix("multimix_"))
    if cls is None:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(BUILDERS)}")
    to_hw(size)
    builder = cls(data_dir=os.fspath(data_dir), file_format="array_record",
                  config=tfds.core.BuilderConfig(name=f"{int(size)}px"))
    builder.options = _options(cls, options)
    builder.given = {k: builder.options[k] for k, v in options.items() if v is not None}
    return builder


def open_dataset(name: str, data_dir: os.PathLike | str, size: int, **options: Any) -> _Builder:
    """A built dataset; options, if given, must be those it was built with."""
    builder = make_builder(name, data_dir, size, **options)
    if not builder.is_prepared():
        raise DataError(data_dir, f"holds no {name} dataset at {size} px: build it with "
                        f"scripts/build_dataset.py {name} --manual_dir DIR --data_dir {data_dir} "
                        f"--size {size}")
    built = builder.info.metadata.get("options", {})
    wrong = {k: v for k, v in builder.given.items() if built.get(k) != v}
    if wrong:
        raise DataError(builder.data_path, f"was built with {({k: built.get(k) for k in wrong})} "
                        f"but {wrong} was asked for: rebuild it with those options (--overwrite)")
    return builder


def build_dataset(name: str, manual_dir: os.PathLike | str, data_dir: os.PathLike | str,
                  size: int = 256, *, overwrite: bool = False, **options: Any) -> _Builder:
    """Builds dataset ``name`` from ``manual_dir`` (or returns the identical one already
    built); see the module docstring. Raises DataError, leaving ``data_dir`` as it was."""
    manual_dir, data_dir = (Path(d).expanduser().absolute() for d in (manual_dir, data_dir))
    if not manual_dir.is_dir() or not any(manual_dir.iterdir()):
        raise DataError(manual_dir, "manual_dir is missing, not a folder or empty")
    builder = make_builder(name, data_dir, size, **options)
    source = {"source": str(manual_dir), "fingerprint": fingerprint(manual_dir)}
    if builder.is_prepared() and not overwrite:
        md = builder.info.metadata
        if md.get("fingerprint") == source["fingerprint"] and md.get("options") == builder.options:
            return builder
        raise DataError(builder.data_path, f"already holds {name} built from {md.get('source')} "
                        f"with options {md.get('options')}; this build is from {manual_dir} with "
                        f"{builder.options} (or its files changed): pass --overwrite to replace "
                        "it, or choose another --data_dir")
    created = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*data_dir.glob(".incomplete-*"), *data_dir.glob("multimix_*/*/incomplete.*")]:
        shutil.rmtree(stale, ignore_errors=True)  # left by killed builds
    tmp = Path(tempfile.mkdtemp(prefix=".incomplete-", dir=data_dir))
    try:
        fresh = make_builder(name, tmp, size, **options)
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
    return make_builder(name, data_dir, size, **options)

