"""Readers for the manual-download folder layouts of each chest X-ray dataset.

Each reader walks a folder and returns ``(records, summary)``: a list of
:class:`Record` (sorted by key; no pixels are loaded here) and a
:class:`SkipSummary` counting every file that was deliberately not used, by
reason. Structural problems (no images at all, an unknown or empty class
folder, duplicate ids, a missing CSV column) raise
:class:`~multimix_jax.datasets.image_io.DataError` naming the path.

Keys: datasets with official ids (JSRT, Montgomery, Shenzhen, NIH) use the file
stem / name (``JPCLN001``, ``MCUCXR_0001_0``, ``00000013_005.png``); folder
based layouts (Kermany, generic folders) use the path relative to the root,
with extension (``train/NORMAL/IM-0115-0001.jpeg``).

Left and right lung masks stay separate paths in ``Record.mask_paths``; they are
united (logical OR) when pixels are loaded.

Skip reasons used in summaries:

* ``ignored_system_file`` -- ``.DS_Store``, ``Thumbs.db``, hidden files, ``__MACOSX``
* ``not_an_image`` -- extension is not an image extension (csv, txt, ...)
* ``outside_class_folder`` -- a file directly in a classification root
* ``unexpected_folder`` -- a folder that is not part of the layout
* ``unknown_class`` -- a class folder not in ``class_names`` (``allow_unknown=True``)
* ``image_without_mask`` / ``mask_without_image`` -- unpaired segmentation files
* ``unused_structure`` -- SCR masks of other structures (heart, clavicles)
* ``other_finding`` -- NIH images neither ``Pneumonia`` nor ``No Finding``
* ``not_in_csv`` / ``missing_image`` -- NIH files without a CSV row and vice versa
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from multimix_jax.datasets.image_io import DataError, is_ignorable, is_image_file

__all__ = [
    'CLASS_NAMES',
    'Record',
    'SkipSummary',
    'SPLIT_ALIASES',
    'read_classification_folder',
    'read_jsrt',
    'read_kermany',
    'read_montgomery',
    'read_nih_pneumonia',
    'read_segmentation_folder',
    'read_shenzhen',
]

log = logging.getLogger(__name__)

CLASS_NAMES = ('NORMAL', 'PNEUMONIA')

# Folder names accepted as splits (lower case) -> canonical TFDS split name.
SPLIT_ALIASES = {
    'train': 'train', 'training': 'train',
    'val': 'validation', 'valid': 'validation', 'validation': 'validation',
    'test': 'test', 'testing': 'test',
}


@dataclasses.dataclass(frozen=True)
class Record:
  """One example: where its pixels are, and its label/split if known.

  ``meta`` holds dataset-specific metadata that is not a training target
  (e.g. Montgomery/Shenzhen ``{'abnormal': 0 | 1}`` from the file name).
  """
  key: str
  image_path: Path
  mask_paths: tuple[Path, ...] = ()
  label: int | None = None
  split: str | None = None
  meta: Mapping[str, Any] = dataclasses.field(
      default_factory=dict, compare=False, hash=False)


@dataclasses.dataclass
class SkipSummary:
  """Counts (and a few example paths) of skipped files, by reason."""
  counts: dict[str, int] = dataclasses.field(default_factory=dict)
  examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)
  max_examples: int = 5

  def add(self, reason: str, path: os.PathLike | str | None = None, n: int = 1) -> None:
    self.counts[reason] = self.counts.get(reason, 0) + n
    if path is not None:
      ex = self.examples.setdefault(reason, [])
      if len(ex) < self.max_examples:
        ex.append(os.fspath(path))

  def update(self, other: 'SkipSummary') -> None:
    for reason, n in other.counts.items():
      self.counts[reason] = self.counts.get(reason, 0) + n
    for reason, ex in other.examples.items():
      mine = self.examples.setdefault(reason, [])
      mine.extend(ex[: max(0, self.max_examples - len(mine))])

  @property
  def total(self) -> int:
    return sum(self.counts.values())

  def __getitem__(self, reason: str) -> int:
    return self.counts.get(reason, 0)

  def as_dict(self) -> dict[str, Any]:
    return {'total': self.total, 'counts': dict(sorted(self.counts.items())),
            'examples': {k: list(v) for k, v in sorted(self.examples.items())}}

  def __str__(self) -> str:
    if not self.counts:
      return 'skipped 0 files'
    lines = [f'skipped {self.total} files:']
    for reason, n in sorted(self.counts.items()):
      ex = self.examples.get(reason, [])
      lines.append(f'  {reason}: {n}' + (f' (e.g. {", ".join(ex[:3])})' if ex else ''))
    return '\n'.join(lines)


# --------------------------------------------------------------------------
# Folder walking helpers
# --------------------------------------------------------------------------


def _check_dir(path: os.PathLike | str) -> Path:
  p = Path(path)
  if not p.exists():
    raise DataError(p, 'folder does not exist')
  if not p.is_dir():
    raise DataError(p, 'not a folder')
  return p


def _walk_files(root: Path, summary: SkipSummary) -> Iterator[Path]:
  """All files under root (sorted, recursive); system files are counted and skipped."""
  for dirpath, dirnames, filenames in os.walk(root):
    dpath = Path(dirpath)
    keep = []
    for d in sorted(dirnames):
      if is_ignorable(dpath / d):
        summary.add('ignored_system_file', dpath / d)
      else:
        keep.append(d)
    dirnames[:] = keep
    for f in sorted(filenames):
      p = dpath / f
      if is_ignorable(p):
        summary.add('ignored_system_file', p)
      else:
        yield p


def _image_files(root: Path, summary: SkipSummary) -> list[Path]:
  out = []
  for p in _walk_files(root, summary):
    if is_image_file(p):
      out.append(p)
    else:
      summary.add('not_an_image', p)
  return out


def _subdirs(d: Path, summary: SkipSummary | None = None) -> list[Path]:
  out = []
  for c in sorted(d.iterdir()):
    if c.is_dir():
      if is_ignorable(c):
        if summary is not None:
          summary.add('ignored_system_file', c)
      else:
        out.append(c)
  return out


def _norm(name: str) -> str:
  return re.sub(r'[\s_\-]+', '', name.lower())


def _find_dirs(root: Path, names: Iterable[str]) -> list[Path]:
  """Folders under root (root included) whose normalised name is in names,
  shallowest first."""
  wanted = {_norm(n) for n in names}
  found = []
  if _norm(root.name) in wanted:
    found.append(root)
  for dirpath, dirnames, _ in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if not is_ignorable(Path(dirpath) / d))
    for d in dirnames:
      if _norm(d) in wanted:
        found.append(Path(dirpath) / d)
  found.sort(key=lambda p: (len(p.parts), str(p)))
  return found


def _find_dir(root: Path, names: Sequence[str], what: str) -> Path:
  found = _find_dirs(root, names)
  if not found:
    raise DataError(root, f'no {what} folder (named {" or ".join(names)}) found under it')
  return found[0]


def _rel(path: Path, root: Path) -> str:
  return path.relative_to(root).as_posix()


def _check_unique(records: list[Record]) -> list[Record]:
  seen: dict[str, Path] = {}
  for r in records:
    if r.key in seen:
      raise DataError(r.image_path, f'duplicate id {r.key!r} (also {seen[r.key]})')
    seen[r.key] = r.image_path
  return sorted(records, key=lambda r: r.key)


def _label_from_last_digit(stem: str) -> int | None:
  m = re.search(r'_(\d)$', stem)
  return int(m.group(1)) if m else None


# --------------------------------------------------------------------------
# Classification layouts
# --------------------------------------------------------------------------


def _read_class_dirs(
    parent: Path, root: Path, class_names: Sequence[str], split: str | None,
    allow_unknown: bool, summary: SkipSummary,
) -> list[Record]:
  index = {c.lower(): i for i, c in enumerate(class_names)}
  records = []
  for f in sorted(parent.iterdir()):
    if f.is_file():
      summary.add('ignored_system_file' if is_ignorable(f) else 'outside_class_folder', f)
  class_dirs = _subdirs(parent, summary)
  if not class_dirs:
    raise DataError(parent, f'no class folders found (expected {", ".join(class_names)})')
  for d in class_dirs:
    label = index.get(d.name.lower())
    if label is None:
      if not allow_unknown:
        raise DataError(d, f'unknown class folder {d.name!r}; expected one of '
                        f'{list(class_names)} (case-insensitive)')
      n = sum(1 for _ in _walk_files(d, SkipSummary()))
      summary.add('unknown_class', d, n=max(n, 1))
      continue
    files = _image_files(d, summary)
    if not files:
      raise DataError(d, f'class folder {d.name!r} contains no images')
    records += [Record(key=_rel(f, root), image_path=f, label=label, split=split)
                for f in files]
  return records


def read_classification_folder(
    root: os.PathLike | str,
    class_names: Sequence[str] = CLASS_NAMES,
    *,
    allow_unknown: bool = False,
) -> tuple[list[Record], SkipSummary]:
  """Generic classification folder: ``ROOT/<class>/*`` or ``ROOT/<split>/<class>/*``.

  Class folder names are matched case-insensitively against ``class_names``;
  the label is the index in that list (default NORMAL=0, PNEUMONIA=1). Files
  below a class folder are taken recursively. If any child of ``ROOT`` is named
  like a split (train/training, val/valid/validation, test/testing), the split
  layout is used and ``Record.split`` is 'train'/'validation'/'test';
  otherwise ``split`` is None.

  Args:
    allow_unknown: False (default): a class folder not in ``class_names`` (or,
      in the split layout, a non-split folder) raises DataError naming it.
      True: such folders are skipped and counted (``unknown_class`` /
      ``unexpected_folder``).

  Raises:
    DataError: unknown class folder (unless allow_unknown), empty class folder,
      no class folders, missing root.
  """
  root = _check_dir(root)
  summary = SkipSummary()
  subdirs = _subdirs(root)
  split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
  if split_dirs:
    for f in sorted(root.iterdir()):
      if f.is_file() or is_ignorable(f):
        summary.add('ignored_system_file' if is_ignorable(f) else 'outside_class_folder', f)
    records = []
    for d in subdirs:
      if d not in split_dirs:
        if not allow_unknown:
          raise DataError(d, f'unexpected folder {d.name!r} next to split folders '
                          f'{[s.name for s in split_dirs]}')
        summary.add('unexpected_folder', d)
        continue
      records += _read_class_dirs(d, root, class_names, SPLIT_ALIASES[d.name.lower()],
                                  allow_unknown, summary)
  else:
    records = _read_class_dirs(root, root, class_names, None, allow_unknown, summary)
  if not records:
    raise DataError(root, 'no images found')
  return _check_unique(records), summary


def read_kermany(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
  """Kermany "Chest X-Ray Images (Pneumonia)": ``chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}``.

  ``root`` may be the ``chest_xray`` folder itself or any parent up to two
  ``chest_xray`` levels up (the Kaggle archive nests ``chest_xray/chest_xray``;
  the shallowest folder holding split folders wins, other folders next to the
  splits, e.g. the nested copy or ``__MACOSX``, are skipped and counted). The
  split comes from the folder (val -> 'validation').
  """
  root = _check_dir(root)
  base = None
  for cand in [root] + _find_dirs(root, ['chest_xray']):
    if any(d.name.lower() in SPLIT_ALIASES for d in _subdirs(cand)):
      base = cand
      break
  if base is None:
    raise DataError(root, 'no chest_xray/{train,val,test}/{NORMAL,PNEUMONIA} folders found')
  summary = SkipSummary()
  records = []
  for d in _subdirs(base, summary):
    split = SPLIT_ALIASES.get(d.name.lower())
    if split is None:
      summary.add('unexpected_folder', d)
      continue
    records += _read_class_dirs(d, base, CLASS_NAMES, split, False, summary)
  return _check_unique(records), summary


def read_nih_pneumonia(
    root: os.PathLike | str, csv_path: os.PathLike | str | None = None,
) -> tuple[list[Record], SkipSummary]:
  """NIH ChestX-ray14 pneumonia subset: ``images*/**.png`` + ``Data_Entry_2017.csv``.

  Label: PNEUMONIA (1) if 'Pneumonia' is one of the '|'-separated
  'Finding Labels', NORMAL (0) if the labels are exactly 'No Finding';
  anything else is skipped (``other_finding``). Images may sit in any
  sub-folder (the download comes as ``images_001/images/...``). Only images
  present on disk become records (split 'test'); CSV rows without a file count
  as ``missing_image`` (e.g. a partial download).
  """
  root = _check_dir(root)
  summary = SkipSummary()
  all_files = list(_walk_files(root, summary))
  if csv_path is None:
    cands = sorted(
        (p for p in all_files
         if p.name.lower().startswith('data_entry') and p.suffix.lower() == '.csv'),
        key=lambda p: (len(p.parts), str(p)))
    if not cands:
      raise DataError(root, 'no Data_Entry_2017.csv found under it')
    csv_path = cands[0]
  csv_path = Path(csv_path)
  files: dict[str, Path] = {}
  for p in all_files:
    if p == csv_path:
      continue
    if not is_image_file(p):
      summary.add('not_an_image', p)
      continue
    if p.name in files:
      raise DataError(p, f'duplicate image name (also {files[p.name]})')
    files[p.name] = p
  try:
    with open(csv_path, newline='', encoding='utf-8-sig') as fh:
      reader = csv.DictReader(fh)
      cols = [c.strip() for c in (reader.fieldnames or [])]
      if 'Image Index' not in cols or 'Finding Labels' not in cols:
        raise DataError(csv_path, f"needs columns 'Image Index' and 'Finding Labels', has {cols}")
      rows = [{k.strip(): (v or '') for k, v in row.items() if k} for row in reader]
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(csv_path, f'cannot read CSV ({e})') from e
  records = []
  in_csv = set()
  for row in rows:
    name = row['Image Index'].strip()
    in_csv.add(name)
    labels = {s.strip() for s in row['Finding Labels'].split('|') if s.strip()}
    if 'Pneumonia' in labels:
      label = 1
    elif labels == {'No Finding'}:
      label = 0
    else:
      if name in files:
        summary.add('other_finding', files[name])
      continue
    if name not in files:
      summary.add('missing_image', name)
      continue
    records.append(Record(key=name, image_path=files[name], label=label, split='test'))
  for name, p in files.items():
    if name not in in_csv:
      summary.add('not_in_csv', p)
  if not records:
    raise DataError(root, 'no NIH images labelled Pneumonia or No Finding found')
  return _check_unique(records), summary


# --------------------------------------------------------------------------
# Segmentation layouts
# --------------------------------------------------------------------------


_MASK_SUFFIX = re.compile(r'[_\-]?mask$', re.IGNORECASE)


def read_segmentation_folder(
    root: os.PathLike | str, *, strict: bool = False,
) -> tuple[list[Record], SkipSummary]:
  """Generic segmentation folder: ``ROOT/images/*`` + ``ROOT/masks/*``.

  Image and mask are paired by their path relative to ``images/`` / ``masks/``
  without extension, case-insensitively; the mask name may carry a ``_mask``
  (or ``-mask``) suffix: ``images/a.jpg`` <-> ``masks/a.png`` or
  ``masks/a_mask.png``. One mask per image (both lungs one class).

  Args:
    strict: False: an image without mask is skipped and counted
      (``image_without_mask``); True: it raises DataError. A mask without
      image is always just counted (``mask_without_image``).
  """
  root = _check_dir(root)
  summary = SkipSummary()
  img_dirs = [d for d in _subdirs(root) if d.name.lower() in ('images', 'image', 'imgs')]
  mask_dirs = [d for d in _subdirs(root) if d.name.lower() in ('masks', 'mask')]
  if not img_dirs or not mask_dirs:
    raise DataError(root, 'expected sub-folders images/ and masks/')
  img_dir, mask_dir = img_dirs[0], mask_dirs[0]
  masks: dict[str, Path] = {}
  for m in _image_files(mask_dir, summary):
    rel = m.relative_to(mask_dir).with_suffix('').as_posix()
    stem = _MASK_SUFFIX.sub('', rel).lower()
    if stem in masks:
      raise DataError(m, f'two masks for the same image (also {masks[stem]})')
    masks[stem] = m
  used = set()
  records = []
  for f in _image_files(img_dir, summary):
    stem = f.relative_to(img_dir).with_suffix('').as_posix().lower()
    m = masks.get(stem)
    if m is None:
      if strict:
        raise DataError(f, 'image has no mask in ' + str(mask_dir))
      summary.add('image_without_mask', f)
      continue
    used.add(stem)
    records.append(Record(key=_rel(f, root), image_path=f, mask_paths=(m,)))
  for stem, m in masks.items():
    if stem not in used:
      summary.add('mask_without_image', m)
  if not records:
    raise DataError(root, 'no image/mask pairs found')
  return _check_unique(records), summary


def _classify_jsrt_files(files: Iterable[Path], summary: SkipSummary):
  """Splits files into JSRT .IMG images and SCR left/right lung masks (by stem)."""
  images: list[Path] = []
  left: dict[str, Path] = {}
  right: dict[str, Path] = {}
  for p in files:
    suffix = p.suffix.lower()
    if suffix == '.img':
      images.append(p)
      continue
    if not is_image_file(p):
      summary.add('not_an_image', p)
      continue
    side = _norm(p.parent.name)
    table = left if side in ('leftlung', 'leftmask', 'left') else (
        right if side in ('rightlung', 'rightmask', 'right') else None)
    if table is None:
      summary.add('unused_structure', p)  # SCR heart/clavicle masks, previews, ...
      continue
    stem = p.stem.lower()
    if stem in table:
      raise DataError(p, f'duplicate lung mask (also {table[stem]})')
    table[stem] = p
  return images, left, right


def read_jsrt(
    root: os.PathLike | str, scr_root: os.PathLike | str | None = None,
) -> tuple[list[Record], SkipSummary]:
  """JSRT images (``*.IMG`` anywhere under ``root``, e.g. ``All247images/``)
  with SCR lung masks (``left lung/*.gif`` and ``right lung/*.gif`` anywhere
  under ``scr_root``, default ``root``; the SCR download has them in
  ``scratch/fold1/masks/{left lung,right lung}`` and ``.../fold2/...``).

  Pairing is by stem (``JPCLN001.IMG`` <-> ``JPCLN001.gif``). Images missing a
  lung mask are skipped (``image_without_mask``). SCR masks of other structures
  (heart, clavicles) are counted as ``unused_structure``. JSRT has no official
  split: ``split`` is None. Note SCR masks are 1024x1024 for 2048x2048 images.
  """
  root = _check_dir(root)
  summary = SkipSummary()
  files = list(_walk_files(root, summary))
  if scr_root is not None:
    scr = _check_dir(scr_root)
    if scr != root and root not in scr.parents:
      files += list(_walk_files(scr, summary))
  else:
    scr = root
  images, left, right = _classify_jsrt_files(sorted(set(files)), summary)
  if not images:
    raise DataError(root, 'no JSRT .IMG files found under it')
  if not left and not right:
    raise DataError(scr, "no SCR 'left lung'/'right lung' mask files found under it")
  records = []
  used = set()
  for p in images:
    stem = p.stem.lower()
    if stem in left and stem in right:
      used.add(stem)
      records.append(Record(key=p.stem, image_path=p, mask_paths=(left[stem], right[stem])))
    else:
      summary.add('image_without_mask', p)
  for table in (left, right):
    for stem, m in table.items():
      if stem not in used:
        summary.add('mask_without_image', m)
  if not records:
    raise DataError(root, 'no JSRT image has both SCR lung masks')
  return _check_unique(records), summary


def read_montgomery(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
  """Montgomery County set: ``CXR_png/*.png`` + ``ManualMask/{leftMask,rightMask}/*.png``.

  The folders are found anywhere under ``root``. Masks share the image's file
  name. ``meta['abnormal']`` is the last digit of the name
  (``MCUCXR_0001_0.png``: 0 normal, 1 tuberculosis) -- metadata only,
  ``label`` stays None.
  """
  root = _check_dir(root)
  summary = SkipSummary()
  img_dir = _find_dir(root, ['CXR_png'], 'CXR_png')
  lm = _find_dir(root, ['leftMask'], 'ManualMask/leftMask')
  rm = _find_dir(root, ['rightMask'], 'ManualMask/rightMask')
  lmap = {p.stem.lower(): p for p in _image_files(lm, summary)}
  rmap = {p.stem.lower(): p for p in _image_files(rm, summary)}
  records, used = [], set()
  for p in _image_files(img_dir, summary):
    stem = p.stem.lower()
    if stem in lmap and stem in rmap:
      used.add(stem)
      records.append(Record(key=p.stem, image_path=p, mask_paths=(lmap[stem], rmap[stem]),
                            meta={'abnormal': _label_from_last_digit(p.stem)}))
    else:
      summary.add('image_without_mask', p)
  for table in (lmap, rmap):
    for stem, m in table.items():
      if stem not in used:
        summary.add('mask_without_image', m)
  if not records:
    raise DataError(root, 'no Montgomery image has both lung masks')
  return _check_unique(records), summary


def read_shenzhen(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
  """Shenzhen set: ``CXR_png/*.png`` + ``mask/*_mask.png`` (found anywhere under root).

  Only images with a mask are segmentation examples; the others are counted
  as ``image_without_mask``. ``meta['abnormal']`` from the name's last digit.
  """
  root = _check_dir(root)
  summary = SkipSummary()
  img_dir = _find_dir(root, ['CXR_png'], 'CXR_png')
  mask_dirs = [d for d in _find_dirs(root, ['mask', 'masks']) if img_dir not in d.parents]
  if not mask_dirs:
    raise DataError(root, 'no mask/ folder found under it')
  masks: dict[str, Path] = {}
  for m in _image_files(mask_dirs[0], summary):
    stem = _MASK_SUFFIX.sub('', m.stem).lower()
    if stem in masks:
      raise DataError(m, f'two masks for the same image (also {masks[stem]})')
    masks[stem] = m
  records, used = [], set()
  for p in _image_files(img_dir, summary):
    stem = p.stem.lower()
    if stem in masks:
      used.add(stem)
      records.append(Record(key=p.stem, image_path=p, mask_paths=(masks[stem],),
                            meta={'abnormal': _label_from_last_digit(p.stem)}))
    else:
      summary.add('image_without_mask', p)
  for stem, m in masks.items():
    if stem not in used:
      summary.add('mask_without_image', m)
  if not records:
    raise DataError(root, 'no Shenzhen image has a mask')
  return _check_unique(records), summary
