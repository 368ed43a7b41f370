"""TFDS builders (ArrayRecord, no TensorFlow) for the chest X-ray datasets.

Each builder converts a user's manually downloaded folder (``manual_dir``) to
ArrayRecord files at one square resolution ``S``:

* classification sets: ``image`` uint8 ``(S, S, 1)``, ``label``
  ``ClassLabel(['NORMAL', 'PNEUMONIA'])``, ``key`` (Text, the record id);
* segmentation sets: ``image`` uint8 ``(S, S, 1)``, ``mask`` uint8 ``(S, S, 1)``
  in {0, 1} (left OR right lung), ``key``; Montgomery/Shenzhen add
  ``abnormal`` (int64: 0 normal, 1 TB, -1 unknown; metadata, not a target).

Only ``Tensor``, ``ClassLabel`` and ``Text`` features are used: they encode
with numpy alone (an ``Image`` feature would need TensorFlow). Read back with
``builder.as_data_source(split=...)`` (random access, Grain-compatible).

Pixels: :mod:`multimix_jax.datasets.image_io` (grayscale conversion rules,
bilinear antialiased squash-resize of images, masks resized as float then
``>= 0.5``). A mask whose size differs from its image is an error
(``mask_size_policy='error'``), except for JSRT where the SCR masks are
1024x1024 for 2048x2048 images (``'same_aspect'``: proportional sizes allowed);
``'resize'`` accepts any size.

Splits (all seeded, ``split_seed`` default 0; keys are sorted first, then
permuted with ``np.random.default_rng(split_seed)``):

=====================  ==========================================================
builder                splits
=====================  ==========================================================
kermany                from the folders: train / validation (val) / test
jsrt                   111 / 13 / 123 (paper), proportional if not 247 images
montgomery             93 / 10 / 35 (paper), proportional if not 138 images
shenzhen               train / validation / test = 70% / 10% / 20%
nih_pneumonia          test only; NORMAL subsampled to 2754 as in the paper
                       (``max_normal``, 0 keeps all)
generic_classification folder splits if present, else stratified train /
                       validation with ``val_fraction`` (0.1), ``test_fraction`` (0)
generic_segmentation   train / validation with ``val_fraction`` (0.1),
                       ``test_fraction`` (0)
=====================  ==========================================================

The skip summary (files deliberately not used, by reason) is logged and stored
in ``builder.info.metadata['skip_summary']`` (``metadata.json`` next to the
ArrayRecord files), together with the options and split sizes.

Use :func:`build_dataset`, which also guarantees that a failed build leaves
nothing behind in ``data_dir`` (TFDS itself removes only its ``incomplete.*``
folder and leaves the ``<name>/<config>/`` and ``<name>/.config/`` folders).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from multimix_jax.datasets import layouts
from multimix_jax.datasets.image_io import (
    JSRT_SHAPE, DataError, load_grayscale, load_jsrt_img, load_mask, resize_image,
    resize_mask, to_hw)
from multimix_jax.datasets.layouts import CLASS_NAMES, Record, SkipSummary

__all__ = [
    'BUILDERS',
    'MASK_SIZE_POLICIES',
    'SIZES',
    'XrayConfig',
    'build_dataset',
    'load_example',
    'load_folder_arrays',
    'load_records',
    'make_builder',
    'seeded_split',
    'summary_text',
]

log = logging.getLogger(__name__)

SIZES = (128, 256)  # predefined BuilderConfigs; any other size works too
MASK_SIZE_POLICIES = ('error', 'same_aspect', 'resize')
_VERSION = tfds.core.Version('1.0.0')


# --------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------


def _check_mask_shape(mask_shape, image_shape, mask_path: Path, image_path: Path,
                      policy: str) -> None:
  if policy not in MASK_SIZE_POLICIES:
    raise ValueError(f'mask_size_policy must be one of {MASK_SIZE_POLICIES}, got {policy!r}')
  if tuple(mask_shape) == tuple(image_shape) or policy == 'resize':
    return
  (mh, mw), (ih, iw) = mask_shape, image_shape
  if policy == 'same_aspect' and abs(mh * iw - mw * ih) <= 0.01 * ih * iw:
    return
  raise DataError(mask_path, f'mask is {mw}x{mh} (WxH) but its image {image_path} is '
                  f'{iw}x{ih}' + ('' if policy == 'error' else ' (different aspect ratio)'))


def load_example(
    record: Record,
    size: int | Sequence[int],
    *,
    mask_size_policy: str = 'error',
    jsrt_shape: int | Sequence[int] | None = JSRT_SHAPE,
) -> dict[str, np.ndarray]:
  """Loads one record's pixels: ``{'image': uint8 (h, w)[, 'mask': uint8 (h, w)]}``.

  The record's masks (e.g. left and right lung) are united with logical OR at
  their native resolution, then resized. Raises DataError naming the file.
  """
  ip = Path(record.image_path)
  if ip.suffix.lower() == '.img':
    img = load_jsrt_img(ip, jsrt_shape if jsrt_shape is not None else JSRT_SHAPE)
  else:
    img = load_grayscale(ip)
  out = {'image': resize_image(img, size)}
  if record.mask_paths:
    union = None
    for mp in record.mask_paths:
      m = load_mask(mp)
      _check_mask_shape(m.shape, img.shape, Path(mp), ip, mask_size_policy)
      if union is None:
        union = m
      elif m.shape != union.shape:
        raise DataError(mp, f'mask shape {m.shape} differs from {record.mask_paths[0]} '
                        f'{union.shape} of the same image')
      else:
        union = union | m
    out['mask'] = resize_mask(union, size)
  return out


def _parallel_map(fn: Callable, items: Sequence, workers: int | None) -> Iterator:
  """``map(fn, items)`` in order, on a thread pool (Pillow releases the GIL)
  with a bounded number of results in flight."""
  workers = workers or min(8, 2 * (os.cpu_count() or 1))
  if workers <= 1 or len(items) <= 1:
    yield from map(fn, items)
    return
  window = 4 * workers
  with concurrent.futures.ThreadPoolExecutor(workers) as ex:
    pending = []
    it = iter(items)
    try:
      for item in it:
        pending.append(ex.submit(fn, item))
        if len(pending) >= window:
          yield pending.pop(0).result()
      while pending:
        yield pending.pop(0).result()
    finally:
      for f in pending:
        f.cancel()


# --------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
  if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
    raise ValueError(f'bad split fractions val={val_fraction} test={test_fraction}')
  n_val = int(round(n * val_fraction))
  n_test = int(round(n * test_fraction))
  # Keep every requested split non-empty when there is room for it.
  if val_fraction > 0 and n_val == 0 and n - n_test >= 2:
    n_val = 1
  if test_fraction > 0 and n_test == 0 and n - n_val >= 2:
    n_test = 1
  return n - n_val - n_test, n_val, n_test


def seeded_split(
    keys: Sequence[str],
    val_fraction: float,
    test_fraction: float = 0.0,
    seed: int = 0,
    strata: Sequence[Any] | None = None,
) -> dict[str, list[str]]:
  """Deterministic train/validation/test split of ``keys``.

  Keys are sorted, permuted with ``np.random.default_rng(seed)`` and cut into
  ``round(n * test_fraction)`` test, ``round(n * val_fraction)`` validation
  and the rest train (a non-zero fraction gets at least one key when n allows).
  With ``strata`` (e.g. labels) the cut is made within each stratum, keeping
  class proportions. Returns only non-empty splits.
  """
  if strata is None:
    groups = {None: sorted(keys)}
  else:
    groups = {}
    for k, s in sorted(zip(keys, strata), key=lambda t: t[0]):
      groups.setdefault(s, []).append(k)
  rng = np.random.default_rng(seed)
  out = {'train': [], 'validation': [], 'test': []}
  for s in sorted(groups, key=repr):
    g = groups[s]
    g = [g[i] for i in rng.permutation(len(g))]
    n_train, n_val, n_test = _split_sizes(len(g), val_fraction, test_fraction)
    out['test'] += g[:n_test]
    out['validation'] += g[n_test:n_test + n_val]
    out['train'] += g[n_test + n_val:]
  return {k: sorted(v) for k, v in out.items() if v}


# --------------------------------------------------------------------------
# TFDS builders
# --------------------------------------------------------------------------

# Config options (all None = "this builder's default").
_OPTION_FIELDS = ('split_seed', 'val_fraction', 'test_fraction', 'class_names',
                  'allow_unknown', 'strict', 'mask_size_policy', 'max_normal', 'jsrt_shape')


@dataclasses.dataclass(eq=False)
class XrayConfig(tfds.core.BuilderConfig):
  """One resolution (``size``) plus options; None means the builder's default.

  Options: ``split_seed``; ``val_fraction`` / ``test_fraction`` (seeded
  splits); ``class_names`` / ``allow_unknown`` (generic classification);
  ``strict`` (generic segmentation: image without mask is an error);
  ``mask_size_policy`` ('error' | 'same_aspect' | 'resize'); ``max_normal``
  (NIH, 0 = all); ``jsrt_shape`` (side of the raw .IMG files, 2048).
  """
  size: int = 256
  split_seed: int | None = None
  val_fraction: float | None = None
  test_fraction: float | None = None
  class_names: tuple[str, ...] | None = None
  allow_unknown: bool | None = None
  strict: bool | None = None
  mask_size_policy: str | None = None
  max_normal: int | None = None
  jsrt_shape: int | None = None

  def options(self) -> dict[str, Any]:
    return {k: getattr(self, k) for k in _OPTION_FIELDS if getattr(self, k) is not None}


def _predefined_configs() -> list[XrayConfig]:
  return [XrayConfig(name=f'{s}px', size=s, description=f'{s}x{s} grayscale') for s in SIZES]


_MANUAL = """\
Download the dataset yourself and pass its folder as manual_dir
(scripts/build_dataset.py NAME --manual_dir DIR). Expected layout: {layout}
"""


class _XrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared machinery; subclasses set KIND, LAYOUT, OPTIONS, DEFAULTS, _read."""

  VERSION = _VERSION
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = _predefined_configs()
  DEFAULT_BUILDER_CONFIG_NAME = '256px'
  KIND = 'classification'
  LAYOUT = ''
  DESCRIPTION = ''
  OPTIONS: frozenset[str] = frozenset({'split_seed'})
  DEFAULTS: Mapping[str, Any] = {}
  EXTRA_FEATURES: Mapping[str, Any] = {}
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'see the builder docstring'

  workers: int | None = None  # threads decoding images (None: 2 x cpu count, <= 8)

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    cls.BUILDER_CONFIGS = _predefined_configs()
    cls.MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL.format(layout=cls.LAYOUT)

  # -- options -------------------------------------------------------------
  def opt(self, name: str) -> Any:
    value = getattr(self.builder_config, name, None)
    if value is None:
      value = self.DEFAULTS.get(name, _GLOBAL_DEFAULTS.get(name))
    return value

  @property
  def size(self) -> int:
    return int(self.builder_config.size)

  def _class_names(self) -> tuple[str, ...]:
    return tuple(self.opt('class_names') or CLASS_NAMES)

  # -- TFDS hooks ----------------------------------------------------------
  def _info(self) -> tfds.core.DatasetInfo:
    s = self.size
    feats = {'image': tfds.features.Tensor(shape=(s, s, 1), dtype=np.uint8),
             'key': tfds.features.Text()}
    if self.KIND == 'classification':
      feats['label'] = tfds.features.ClassLabel(names=list(self._class_names()))
    else:
      feats['mask'] = tfds.features.Tensor(shape=(s, s, 1), dtype=np.uint8)
    feats.update(self.EXTRA_FEATURES)
    return tfds.core.DatasetInfo(
        builder=self,
        description=(self.DESCRIPTION + f'\n\nLayout of manual_dir: {self.LAYOUT}\n'
                     "Skipped files: see info.metadata['skip_summary']."),
        features=tfds.features.FeaturesDict(feats),
        supervised_keys=('image', 'label' if self.KIND == 'classification' else 'mask'),
        metadata=tfds.core.MetadataDict(),
    )

  def _read(self, root: Path) -> tuple[list[Record], SkipSummary]:
    raise NotImplementedError

  def _assign_splits(self, records: list[Record]) -> dict[str, list[Record]]:
    """Default: seeded split with the builder's val/test fractions."""
    by_key = {r.key: r for r in records}
    strata = [r.label for r in records] if self.KIND == 'classification' else None
    parts = seeded_split([r.key for r in records], self.opt('val_fraction') or 0.0,
                         self.opt('test_fraction') or 0.0, self.opt('split_seed'), strata)
    return {s: [by_key[k] for k in ks] for s, ks in parts.items()}

  def _split_generators(self, dl_manager):
    root = Path(os.fspath(dl_manager.manual_dir))
    records, summary = self._read(root)
    splits = {s: recs for s, recs in self._assign_splits(records).items() if recs}
    extra = getattr(self, '_extra_skips', None)
    if extra is not None:
      summary.update(extra)
    self.skip_summary = summary
    md = self.info.metadata
    md['source'] = str(root)
    md['options'] = {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in ((n, self.opt(n)) for n in sorted(self.OPTIONS))}
    md['split_sizes'] = {s: len(r) for s, r in splits.items()}
    md['skip_summary'] = summary.as_dict()
    log.info('%s (%s): %s; %s', self.name, root, md['split_sizes'], summary)
    return {s: self._generate_examples(recs) for s, recs in splits.items()}

  def _generate_examples(self, records: list[Record]):
    size = self.size
    policy = self.opt('mask_size_policy')
    jsrt_shape = self.opt('jsrt_shape')
    fn = lambda r: load_example(r, size, mask_size_policy=policy, jsrt_shape=jsrt_shape)
    for rec, ex in zip(records, _parallel_map(fn, records, self.workers)):
      feats = {'image': ex['image'][..., None], 'key': rec.key}
      if self.KIND == 'classification':
        feats['label'] = int(rec.label)
      else:
        feats['mask'] = ex['mask'][..., None]
      if 'abnormal' in self.EXTRA_FEATURES:
        a = rec.meta.get('abnormal')
        feats['abnormal'] = np.int64(-1 if a is None else a)
      yield rec.key, feats


_GLOBAL_DEFAULTS = {'split_seed': 0, 'mask_size_policy': 'error', 'allow_unknown': False,
                    'strict': False}


class Kermany(_XrayBuilder):
  """Kermany et al. 2018 "Chest X-Ray Images (Pneumonia)" (in-domain classification)."""
  name = 'multimix_kermany'
  KIND = 'classification'
  LAYOUT = 'chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}/*.jpeg'
  DESCRIPTION = ('Kermany pediatric chest X-rays, NORMAL vs PNEUMONIA; official '
                 'train (5216) / val (16) / test (624) folders.')
  OPTIONS = frozenset()

  def _read(self, root):
    return layouts.read_kermany(root)

  def _assign_splits(self, records):
    out: dict[str, list[Record]] = {}
    for r in records:
      out.setdefault(r.split, []).append(r)
    return out


class _PaperSplitSeg(_XrayBuilder, skip_registration=True):
  KIND = 'segmentation'
  PAPER_COUNTS = (1, 0, 0)  # train, val, test
  OPTIONS = frozenset({'split_seed', 'val_fraction', 'test_fraction', 'mask_size_policy'})

  def _assign_splits(self, records):
    total = sum(self.PAPER_COUNTS)
    vf = self.opt('val_fraction')
    tf = self.opt('test_fraction')
    vf = self.PAPER_COUNTS[1] / total if vf is None else vf
    tf = self.PAPER_COUNTS[2] / total if tf is None else tf
    by_key = {r.key: r for r in records}
    parts = seeded_split(list(by_key), vf, tf, self.opt('split_seed'))
    return {s: [by_key[k] for k in ks] for s, ks in parts.items()}


class Jsrt(_PaperSplitSeg):
  """JSRT (247 images) with SCR lung masks (in-domain segmentation)."""
  name = 'multimix_jsrt'
  LAYOUT = ('All247images/*.IMG (JSRT raw) and the SCR masks, '
            "e.g. scratch/fold{1,2}/masks/{left lung,right lung}/*.gif, in the same folder")
  DESCRIPTION = ('JSRT chest radiographs (raw 12-bit, inverted so lungs are dark) with '
                 'SCR left+right lung masks united; seeded 111/13/123 split as in the paper.')
  PAPER_COUNTS = (111, 13, 123)
  OPTIONS = _PaperSplitSeg.OPTIONS | {'jsrt_shape'}
  DEFAULTS = {'mask_size_policy': 'same_aspect'}

  def _read(self, root):
    return layouts.read_jsrt(root)


class Montgomery(_PaperSplitSeg):
  """Montgomery County CXR set (138) with manual lung masks (cross-domain seg)."""
  name = 'multimix_montgomery'
  LAYOUT = 'CXR_png/*.png, ManualMask/leftMask/*.png, ManualMask/rightMask/*.png'
  DESCRIPTION = ('Montgomery County chest X-rays with left+right lung masks united; '
                 "seeded 93/10/35 split; 'abnormal' (TB) from the file name, metadata only.")
  PAPER_COUNTS = (93, 10, 35)
  EXTRA_FEATURES = {'abnormal': tfds.features.Tensor(shape=(), dtype=np.int64)}

  def _read(self, root):
    return layouts.read_montgomery(root)


class Shenzhen(_XrayBuilder):
  """Shenzhen CXR set, images with lung masks only."""
  name = 'multimix_shenzhen'
  KIND = 'segmentation'
  LAYOUT = 'CXR_png/*.png and mask/*_mask.png'
  DESCRIPTION = ('Shenzhen chest X-rays that have a lung mask; seeded 70/10/20 split; '
                 "'abnormal' (TB) from the file name, metadata only.")
  OPTIONS = frozenset({'split_seed', 'val_fraction', 'test_fraction', 'mask_size_policy'})
  DEFAULTS = {'val_fraction': 0.1, 'test_fraction': 0.2}
  EXTRA_FEATURES = {'abnormal': tfds.features.Tensor(shape=(), dtype=np.int64)}

  def _read(self, root):
    return layouts.read_shenzhen(root)


class NihPneumonia(_XrayBuilder):
  """NIH ChestX-ray14 pneumonia subset (cross-domain classification, test only)."""
  name = 'multimix_nih_pneumonia'
  KIND = 'classification'
  LAYOUT = 'images*/**/*.png and Data_Entry_2017.csv'
  DESCRIPTION = ("NIH ChestX-ray14: PNEUMONIA = 'Pneumonia' among the finding labels, "
                 "NORMAL = 'No Finding'; NORMAL subsampled (seeded) to max_normal=2754 as "
                 'in the paper (4185 images); test split only.')
  OPTIONS = frozenset({'split_seed', 'max_normal'})
  DEFAULTS = {'max_normal': 2754}

  def _read(self, root):
    return layouts.read_nih_pneumonia(root)

  def _assign_splits(self, records):
    max_normal = int(self.opt('max_normal') or 0)
    normal = sorted((r for r in records if r.label == 0), key=lambda r: r.key)
    if 0 < max_normal < len(normal):
      rng = np.random.default_rng(self.opt('split_seed'))
      keep = set(rng.choice(len(normal), size=max_normal, replace=False).tolist())
      dropped = [r for i, r in enumerate(normal) if i not in keep]
      self._extra_skips = SkipSummary()
      for r in dropped:
        self._extra_skips.add('normal_subsampled', r.image_path)
      dropped_keys = {r.key for r in dropped}
      records = [r for r in records if r.key not in dropped_keys]
    return {'test': records}


class GenericClassificationFolder(_XrayBuilder):
  """Any ``ROOT/<class>/*`` or ``ROOT/<split>/<class>/*`` folder."""
  name = 'multimix_generic_classification_folder'
  KIND = 'classification'
  LAYOUT = 'ROOT/<class>/* or ROOT/{train,val,test}/<class>/* (classes case-insensitive)'
  DESCRIPTION = 'A user folder of classified chest X-rays.'
  OPTIONS = frozenset({'split_seed', 'val_fraction', 'test_fraction', 'class_names',
                       'allow_unknown'})
  DEFAULTS = {'val_fraction': 0.1, 'test_fraction': 0.0}

  def _read(self, root):
    return layouts.read_classification_folder(
        root, self._class_names(), allow_unknown=bool(self.opt('allow_unknown')))

  def _assign_splits(self, records):
    if all(r.split is not None for r in records):
      out: dict[str, list[Record]] = {}
      for r in records:
        out.setdefault(r.split, []).append(r)
      return out
    return super()._assign_splits(records)


class GenericSegmentationFolder(_XrayBuilder):
  """Any ``ROOT/images/*`` + ``ROOT/masks/*`` folder (stems match, ``_mask`` ok)."""
  name = 'multimix_generic_segmentation_folder'
  KIND = 'segmentation'
  LAYOUT = 'ROOT/images/* and ROOT/masks/* with matching stems (mask may end in _mask)'
  DESCRIPTION = 'A user folder of chest X-rays with lung masks.'
  OPTIONS = frozenset({'split_seed', 'val_fraction', 'test_fraction', 'strict',
                       'mask_size_policy'})
  DEFAULTS = {'val_fraction': 0.1, 'test_fraction': 0.0}

  def _read(self, root):
    return layouts.read_segmentation_folder(root, strict=bool(self.opt('strict')))


BUILDERS: dict[str, type[_XrayBuilder]] = {
    'kermany': Kermany,
    'jsrt': Jsrt,
    'montgomery': Montgomery,
    'shenzhen': Shenzhen,
    'nih_pneumonia': NihPneumonia,
    'generic_classification_folder': GenericClassificationFolder,
    'generic_segmentation_folder': GenericSegmentationFolder,
}


def _builder_cls(name: str) -> type[_XrayBuilder]:
  key = name.removeprefix('multimix_')
  if key not in BUILDERS:
    raise ValueError(f'unknown dataset {name!r}; choose one of {sorted(BUILDERS)}')
  return BUILDERS[key]


def _normalise_options(cls: type[_XrayBuilder], options: Mapping[str, Any]) -> dict[str, Any]:
  bad = set(options) - set(cls.OPTIONS)
  if bad:
    raise TypeError(f'{cls.name} does not take option(s) {sorted(bad)}; '
                    f'it takes {sorted(cls.OPTIONS)}')
  out = {}
  for k, v in options.items():
    if v is None:
      continue
    if k == 'class_names':
      v = tuple(str(c) for c in v)
    elif k == 'mask_size_policy' and v not in MASK_SIZE_POLICIES:
      raise ValueError(f'mask_size_policy must be one of {MASK_SIZE_POLICIES}, got {v!r}')
    out[k] = v
  return out


def make_builder(
    name: str,
    data_dir: os.PathLike | str,
    size: int = 256,
    *,
    config_name: str | None = None,
    **options: Any,
) -> _XrayBuilder:
  """Instantiates a builder (does not build). Also the way to READ a dataset
  built earlier: pass the same name, data_dir, size and options.

  The config is ``'128px'``/``'256px'`` for the predefined sizes without
  options, ``f'{size}px'`` for other sizes, and ``f'{size}px_<hash>'`` when
  options are given (hash of the options) unless ``config_name`` is set.
  Two different folders built with the same generic builder, size and options
  need different ``data_dir`` or ``config_name``.
  """
  cls = _builder_cls(name)
  opts = _normalise_options(cls, options)
  size = int(size)
  to_hw(size)
  if config_name is None:
    config_name = f'{size}px'
    if opts:
      blob = json.dumps({k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in sorted(opts.items())}, sort_keys=True)
      config_name += '_' + hashlib.sha1(blob.encode()).hexdigest()[:8]
  predefined = {f'{s}px': s for s in SIZES}
  if config_name in predefined:
    if opts or size != predefined[config_name]:
      raise ValueError(f'config_name {config_name!r} is reserved for the predefined '
                       f'{predefined[config_name]}px config without options')
    config: str | XrayConfig = config_name
  else:
    desc = f'{size}x{size} grayscale'
    if opts:
      desc += ', options ' + json.dumps(
          {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(opts.items())})
    config = XrayConfig(name=config_name, size=size, description=desc, **opts)
  return cls(data_dir=os.fspath(data_dir), config=config, file_format='array_record')


def build_dataset(
    name: str,
    manual_dir: os.PathLike | str,
    data_dir: os.PathLike | str,
    size: int = 256,
    *,
    overwrite: bool = False,
    config_name: str | None = None,
    workers: int | None = None,
    **options: Any,
) -> _XrayBuilder:
  """Builds (or reuses) dataset ``name`` from ``manual_dir`` into ``data_dir``.

  Args:
    name: a key of :data:`BUILDERS` ('kermany', 'jsrt', 'montgomery',
      'shenzhen', 'nih_pneumonia', 'generic_classification_folder',
      'generic_segmentation_folder'), optionally prefixed 'multimix_'.
    manual_dir: the user's downloaded / unpacked folder (for the generic
      builders: the folder itself).
    data_dir: TFDS data dir; the dataset lands in
      ``data_dir/multimix_<name>/<config>/1.0.0/``.
    size: output side length S (images are S x S).
    overwrite: rebuild even if the dataset exists (else it is reused as is).
    config_name: see :func:`make_builder`.
    workers: decoding threads (default: 2 x CPU count, at most 8).
    **options: builder options, see :class:`XrayConfig`.

  Returns:
    the builder; read with ``builder.as_data_source(split='train')``; the
    skip summary is ``builder.info.metadata['skip_summary']``.

  Raises:
    DataError: bad folder layout or an undecodable file (named). On ANY
      failure, everything this call created under ``data_dir`` is removed.
  """
  manual_dir = Path(manual_dir).expanduser()
  if not manual_dir.is_dir():
    raise DataError(manual_dir, 'manual_dir does not exist or is not a folder')
  if not any(manual_dir.iterdir()):
    raise DataError(manual_dir, 'manual_dir is empty')
  data_dir = Path(data_dir).expanduser().absolute()
  builder = make_builder(name, data_dir, size, config_name=config_name, **options)
  builder.workers = workers
  name_dir = data_dir / builder.name
  config_dir = name_dir / builder.builder_config.name
  data_path = Path(os.fspath(builder.data_path))
  dot_config = name_dir / '.config'
  watched = [data_dir, name_dir, config_dir, data_path, dot_config]
  existed = {p: p.exists() for p in watched}
  download_dir = tempfile.mkdtemp(prefix='multimix_tfds_')
  mode = (tfds.download.GenerateMode.FORCE_REDOWNLOAD if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  try:
    builder.download_and_prepare(
        download_dir=download_dir,
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir),
                                                     download_mode=mode),
        file_format='array_record')
  except BaseException:
    _remove_new(watched, existed, config_dir)
    raise
  finally:
    shutil.rmtree(download_dir, ignore_errors=True)
  summary = builder.info.metadata.get('skip_summary', {})
  log.info('built %s at %s: splits %s, skipped %s', builder.name, data_path,
           {k: v.num_examples for k, v in builder.info.splits.items()},
           summary.get('counts', {}))
  return builder


def _remove_new(watched: list[Path], existed: dict[Path, bool], config_dir: Path) -> None:
  """Deletes what a failed build created (topmost new folder), and any
  leftover ``incomplete.*`` folder."""
  for p in watched[:4]:  # data_dir, name_dir, config_dir, data_path (top-down)
    if not existed[p] and p.exists():
      shutil.rmtree(p, ignore_errors=True)
      break
  dot_config = watched[4]
  if not existed[dot_config] and dot_config.exists():
    shutil.rmtree(dot_config, ignore_errors=True)
    parent = dot_config.parent
    if not existed[parent] and parent.exists() and not any(parent.iterdir()):
      parent.rmdir()
  if config_dir.exists():
    for p in config_dir.glob('incomplete.*'):
      shutil.rmtree(p, ignore_errors=True)


def summary_text(builder: _XrayBuilder) -> str:
  """Human-readable split sizes and skip summary of a built dataset."""
  md = builder.info.metadata
  sk = md.get('skip_summary', {'total': 0, 'counts': {}, 'examples': {}})
  lines = [f'{builder.name}/{builder.builder_config.name} at {builder.data_path}']
  for s, info in builder.info.splits.items():
    lines.append(f'  {s}: {info.num_examples} examples')
  lines.append(f"  skipped {sk.get('total', 0)} files")
  for reason, n in sk.get('counts', {}).items():
    ex = sk.get('examples', {}).get(reason, [])
    lines.append(f'    {reason}: {n}' + (f' (e.g. {", ".join(ex[:3])})' if ex else ''))
  return '\n'.join(lines)


# --------------------------------------------------------------------------
# Direct in-memory loading (no TFDS)
# --------------------------------------------------------------------------


def load_records(
    records: Sequence[Record],
    size: int | Sequence[int],
    *,
    kind: str,
    mask_size_policy: str = 'error',
    jsrt_shape: int | Sequence[int] | None = JSRT_SHAPE,
    workers: int | None = None,
) -> dict[str, np.ndarray]:
  """Loads records into arrays: ``image`` (N, h, w) uint8, ``label`` (N,) int64
  or ``mask`` (N, h, w) uint8, ``key`` (N,) str, and ``split`` (N,) str when
  the records carry splits ('' for none)."""
  if kind not in ('classification', 'segmentation'):
    raise ValueError(f"kind must be 'classification' or 'segmentation', got {kind!r}")
  h, w = to_hw(size)
  n = len(records)
  image = np.empty((n, h, w), np.uint8)
  mask = np.empty((n, h, w), np.uint8) if kind == 'segmentation' else None
  fn = lambda r: load_example(r, (h, w), mask_size_policy=mask_size_policy,
                              jsrt_shape=jsrt_shape)
  for i, ex in enumerate(_parallel_map(fn, list(records), workers)):
    image[i] = ex['image']
    if mask is not None:
      if 'mask' not in ex:
        raise DataError(records[i].image_path, 'record has no mask')
      mask[i] = ex['mask']
  out = {'image': image}
  if mask is not None:
    out['mask'] = mask
  else:
    out['label'] = np.array([-1 if r.label is None else r.label for r in records], np.int64)
  out['key'] = np.array([r.key for r in records], dtype=str)
  if any(r.split is not None for r in records):
    out['split'] = np.array([r.split or '' for r in records], dtype=str)
  return out


def load_folder_arrays(
    root: os.PathLike | str,
    kind: str,
    size: int | Sequence[int],
    *,
    class_names: Sequence[str] = CLASS_NAMES,
    allow_unknown: bool = False,
    strict: bool = False,
    mask_size_policy: str = 'error',
    workers: int | None = None,
    return_summary: bool = False,
) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], SkipSummary]:
  """Reads a generic folder straight into numpy arrays (no TFDS, no cache).

  Args:
    root: ``kind='classification'``: ``ROOT/<class>/*`` or
      ``ROOT/<split>/<class>/*`` (see
      :func:`~multimix_jax.datasets.layouts.read_classification_folder`);
      ``kind='segmentation'``: ``ROOT/images`` + ``ROOT/masks``.
    size: output size (int or (h, w)); images are squashed to it.
    return_summary: also return the SkipSummary.

  Returns:
    dict with ``image`` (N, h, w) uint8, ``label`` (N,) int64 (index into
    class_names) or ``mask`` (N, h, w) uint8 {0, 1}, ``key`` (N,) str, and
    ``split`` (N,) str if the folder has split sub-folders. Records are
    sorted by key.
  """
  if kind == 'classification':
    records, summary = layouts.read_classification_folder(
        root, class_names, allow_unknown=allow_unknown)
  elif kind == 'segmentation':
    records, summary = layouts.read_segmentation_folder(root, strict=strict)
  else:
    raise ValueError(f"kind must be 'classification' or 'segmentation', got {kind!r}")
  if summary.total:
    log.info('%s: %s', root, summary)
  arrays = load_records(records, size, kind=kind, mask_size_policy=mask_size_policy,
                        workers=workers)
  return (arrays, summary) if return_summary else arrays
