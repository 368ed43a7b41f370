"""Readers of each download's folder layout: ``(records sorted by key, SkipSummary)``.

Keys are the file stem for sets with official ids (JSRT, Montgomery, NIH), else the path
relative to the root. Files deliberately not used are counted by reason (hidden and system
files, non-images, unpaired images or masks, ...); structural problems raise
:class:`~multimix_jax.datasets.image_io.DataError` naming the folder or file.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

from multimix_jax.datasets.image_io import dicom_skip_reason, is_ignorable, is_image_file
from multimix_jax.errors import DataError, UserError
from multimix_jax.names import CLASS_NAMES

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "validation",
                 "valid": "validation", "validation": "validation", "test": "test",
                 "testing": "test"}
_MASK_SUFFIX = re.compile(r"[_\-]?mask$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Record:
    """One example: its files, and its label / split when known."""

    key: str
    image_path: Path
    mask_paths: tuple[Path, ...] = ()
    label: int | None = None
    split: str | None = None


class SkipSummary(collections.Counter):
    """Counts of skipped files by reason, with up to five example paths each."""

    def __init__(self):
        super().__init__()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)

    def add(self, reason: str, path: os.PathLike | str) -> None:
        self[reason] += 1
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(os.fspath(path))

    def __str__(self) -> str:
        return f"skipped {self.total()} files" + "".join(
            f"\n  {r}: {n} (e.g. {', '.join(self.examples[r][:3])})"
            for r, n in sorted(self.items()))


# --------------------------------------------------------------------------- patients
# Kermany et al. name pneumonia films ``personN_bacteria_M`` / ``personN_virus_M`` (patient N)
# and normal films ``IM-XXXX-YYYY`` or ``NORMAL2-IM-XXXX-YYYY`` (patient XXXX, film YYYY;
# ``IM-XXXX-0001-0002`` is a second film of the same study). Whether the NORMAL2- series
# reuses the numbers of the IM- series for the same child is not known, so both fall in one
# group: joining two patients can never leak a patient across a split.
_KERMANY_PATIENT = re.compile(
    r"(?:^|/)(?:person(?P<person>\d+)_(?:bacteria|virus)|(?:normal2-)?im-(?P<normal>\d+))"
    r"[-_][^/]*$", re.IGNORECASE)
GROUP_RULES = ("auto", "film")  # and 'regex:PATTERN'


def kermany_patient(key: str) -> str | None:
    """The Kermany patient id of a film key (``person123``, ``normal-0115``), else None."""
    m = _KERMANY_PATIENT.search(os.path.splitext(key)[0])
    if m is None:
        return None
    return f"person{int(m['person'])}" if m["person"] else f"normal-{int(m['normal'])}"


def patient_groups(keys: Sequence[str], rule: str, what: str = "group") -> list[str]:
    """One group id per film key under ``rule``: 'auto' = the Kermany patient where the file
    name follows Kermany's naming, else the film itself; 'film' = one group per film;
    'regex:PATTERN' = the first capture group of ``re.search(PATTERN, key)`` (the whole
    match without one), else the film itself. ``what`` names the config field."""
    if rule == "film":
        return list(keys)
    if rule == "auto":
        return [kermany_patient(k) or f"film:{k}" for k in keys]
    if rule.startswith("regex:"):
        try:
            pattern = re.compile(rule[len("regex:"):])
        except re.error as e:
            raise UserError(f"{what}={rule!r} is not a valid regular expression ({e})") from None
        found = [pattern.search(k) for k in keys]
        return [(m.group(1) if pattern.groups else m.group(0)) if m else f"film:{k}"
                for m, k in zip(found, keys)]
    raise UserError(f"{what}={rule!r} is not a grouping rule: use 'auto' (Kermany patients), "
                    "'film' (one group per film) or 'regex:PATTERN' (the first capture group)")


def _check_dir(path: os.PathLike | str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise DataError(p, "folder does not exist" if not p.exists() else "not a folder")
    return p


def _walk(root: Path, summary: SkipSummary) -> list[Path]:
    """Every file under root, sorted; system files and folders are counted and skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames) + sorted(filenames):
            if is_ignorable(Path(dirpath) / name):
                summary.add("ignored_system_file", Path(dirpath) / name)
        dirnames[:] = sorted(d for d in dirnames if not is_ignorable(Path(dirpath) / d))
        out += [Path(dirpath) / f for f in sorted(filenames) if not is_ignorable(Path(dirpath) / f)]
    return sorted(out)


def _images(root: Path, summary: SkipSummary) -> list[Path]:
    """The image files under root; other files count as ``not_an_image``, DICOMs that are no
    frontal film by their reason (multi-frame, no pixel data, lateral view)."""
    images = []
    for p in _walk(root, summary):
        reason = "not_an_image" if not is_image_file(p) else dicom_skip_reason(p)
        if reason:
            summary.add(reason, p)
        else:
            images.append(p)
    return images


def _subdirs(d: Path) -> list[Path]:
    return sorted(c for c in d.iterdir() if c.is_dir() and not is_ignorable(c))


def _index(paths: Iterable[Path], key: Callable[[Path], str], what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in paths:
        k = key(p).lower()
        if k in out:
            raise DataError(p, f"two {what} files for the same id {k!r} (also {out[k]})")
        out[k] = p
    return out


def _key(path: Path, base: Path | None = None, mask: bool = False) -> str:
    """``path`` relative to ``base`` (default: its folder) without extension and, for a
    mask, without a ``_mask`` suffix."""
    stem = path.relative_to(base or path.parent).with_suffix("").as_posix()
    return _MASK_SUFFIX.sub("", stem) if mask else stem


def _pair(images: Iterable[Path], mask_lists: Sequence[Iterable[Path]], summary: SkipSummary,
          make: Callable[[Path, tuple[Path, ...]], Record], image_dir: Path | None = None,
          mask_dir: Path | None = None) -> list[Record]:
    """Records of the images that have a mask in every one of ``mask_lists``, matched by
    lower-case :func:`_key` (default: the name without extension and ``_mask``); the others
    are counted as ``image_without_mask``, unused masks as ``mask_without_image``."""
    images = _index(images, lambda p: _key(p, image_dir), "image")
    mask_sets = [_index(masks, lambda p: _key(p, mask_dir, mask=True), "mask")
                 for masks in mask_lists]
    records, used = [], set()
    for stem, image in images.items():
        if all(stem in masks for masks in mask_sets):
            used.add(stem)
            records.append(make(image, tuple(masks[stem] for masks in mask_sets)))
        else:
            summary.add("image_without_mask", image)
    for masks in mask_sets:
        for stem in sorted(set(masks) - used):
            summary.add("mask_without_image", masks[stem])
    return sorted(records, key=lambda r: r.key)


def _count_loose(parent: Path, summary: SkipSummary) -> None:
    """Counts the files and hidden folders directly in a classification (or split) folder."""
    for f in sorted(parent.iterdir()):
        if f.is_file() or is_ignorable(f):
            summary.add("ignored_system_file" if is_ignorable(f) else "outside_class_folder", f)


def _class_records(parent: Path, root: Path, split: str | None,
                   summary: SkipSummary) -> list[Record]:
    index = {c.lower(): i for i, c in enumerate(CLASS_NAMES)}
    _count_loose(parent, summary)
    if not _subdirs(parent):
        raise DataError(parent, f"no class folders found (expected {', '.join(CLASS_NAMES)})")
    records = []
    for d in _subdirs(parent):
        label = index.get(d.name.lower())
        if label is None:
            raise DataError(d, f"unknown class folder {d.name!r}; expected one of "
                            f"{list(CLASS_NAMES)} (case-insensitive)")
        files = _images(d, summary)
        if not files:
            raise DataError(d, f"class folder {d.name!r} contains no images")
        records += [Record(f.relative_to(root).as_posix(), f, label=label, split=split)
                    for f in files]
    return records


def read_classification_folder(root: os.PathLike | str, *, skip_other_folders: bool = False,
                               ) -> tuple[list[Record], SkipSummary]:
    """``ROOT/<class>/*`` or ``ROOT/<split>/<class>/*`` (split folders train, val, test and
    aliases); class folders match ``CLASS_NAMES`` case-insensitively, label = position.
    Other folders next to split folders are an error unless ``skip_other_folders``, then
    counted as ``unexpected_folder``."""
    root = _check_dir(root)
    summary = SkipSummary()
    splits = [d for d in _subdirs(root) if d.name.lower() in SPLIT_ALIASES]
    if not splits:
        records = _class_records(root, root, None, summary)
    else:
        records = []
        for d in _subdirs(root):
            if d in splits:
                records += _class_records(d, root, SPLIT_ALIASES[d.name.lower()], summary)
            elif skip_other_folders:
                summary.add("unexpected_folder", d)
            else:
                raise DataError(d, f"unexpected folder {d.name!r} next to the split folders "
                                f"{[s.name for s in splits]}")
        _count_loose(root, summary)
    if not records:
        raise DataError(root, "no images found")
    return sorted(records, key=lambda r: r.key), summary


def read_segmentation_folder(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
    """``ROOT/images/*`` + ``ROOT/masks/*`` paired by relative path without extension,
    case-insensitively; a mask may end in ``_mask``."""
    root = _check_dir(root)
    summary = SkipSummary()
    image_dirs = [d for d in _subdirs(root) if d.name.lower() in ("images", "image", "imgs")]
    mask_dirs = [d for d in _subdirs(root) if d.name.lower() in ("masks", "mask")]
    if not image_dirs or not mask_dirs:
        raise DataError(root, "expected the sub-folders images/ and masks/")
    img_dir, mask_dir = image_dirs[0], mask_dirs[0]
    records = _pair(_images(img_dir, summary), [_images(mask_dir, summary)], summary,
                    lambda i, m: Record(i.relative_to(root).as_posix(), i, m), img_dir, mask_dir)
    if not records:
        raise DataError(root, "no image/mask pairs found")
    return records, summary


def read_image_tree(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
    """Every image or DICOM file anywhere under root, any layout, no labels (an extra
    unlabelled pool); key = the path relative to root."""
    root = _check_dir(root)
    summary = SkipSummary()
    records = [Record(f.relative_to(root).as_posix(), f) for f in _images(root, summary)]
    if not records:
        raise DataError(root, "no image or DICOM files found under it")
    return records, summary


def read_kermany(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
    """Kermany ``chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}``; ``root`` may be any parent
    (the Kaggle archive nests ``chest_xray/chest_xray``): the shallowest folder holding split
    folders wins, other folders next to the splits are counted as ``unexpected_folder``."""
    root = _check_dir(root)
    folders = [Path(d) for d, _, _ in os.walk(root) if not is_ignorable(Path(d).relative_to(root))]
    for base in sorted(folders, key=lambda p: (len(p.parts), str(p))):
        if any(d.name.lower() in SPLIT_ALIASES for d in _subdirs(base)):
            return read_classification_folder(base, skip_other_folders=True)
    raise DataError(root, "no chest_xray/{train,val,test}/{NORMAL,PNEUMONIA} folders found")


def read_nih_pneumonia(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
    """NIH ChestX-ray14 ``images*/**.png`` + ``Data_Entry_2017.csv`` (split 'test'):
    PNEUMONIA if 'Pneumonia' is among the '|'-separated 'Finding Labels', NORMAL if they are
    exactly 'No Finding', else ``other_finding``; target rows without a file are
    ``missing_image``, files without a row ``not_in_csv``."""
    root, summary = _check_dir(root), SkipSummary()
    files = _walk(root, summary)
    tables = [p for p in files if re.fullmatch(r"data_entry.*\.csv", p.name.lower())]
    if not tables:
        raise DataError(root, "no Data_Entry_2017.csv found under it")
    table = min(tables, key=lambda p: (len(p.parts), str(p)))
    for p in files:
        if p != table and not is_image_file(p):
            summary.add("not_an_image", p)
    images = _index([p for p in files if is_image_file(p)], lambda p: p.name, "image")
    try:
        with open(table, newline="", encoding="utf-8-sig") as fh:
            rows = [(row["Image Index"].strip(), row["Finding Labels"].split("|"))
                    for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, AttributeError) as e:
        raise DataError(table, "cannot read its 'Image Index' and 'Finding Labels' columns "
                        f"({e!r})") from None
    records = []
    for name, findings in rows:
        findings = {f.strip() for f in findings}
        label = 1 if "Pneumonia" in findings else 0 if findings == {"No Finding"} else None
        image = images.pop(name.lower(), None)
        if image is not None and label is not None:
            records.append(Record(image.name, image, label=label, split="test"))
        elif image is not None or label is not None:
            summary.add("other_finding" if image else "missing_image", image or name)
    for image in images.values():
        summary.add("not_in_csv", image)
    if not records:
        raise DataError(root, "no NIH images labelled Pneumonia or No Finding found")
    return sorted(records, key=lambda r: r.key), summary


def _read_lung_set(root: os.PathLike | str, is_image: Callable[[Path], bool],
                   images_name: str) -> tuple[list[Record], SkipSummary]:
    """The files under root that pass ``is_image``, each with its masks in folders named
    for the side (``left lung``, ``leftMask``, ...), paired by stem; other image files
    (heart, clavicles) count as ``unused_structure``."""
    root, summary = _check_dir(root), SkipSummary()
    files = _walk(root, summary)
    side_of = lambda p: re.sub(r"[\s_\-]+|lung|mask", "", p.parent.name.lower())
    images = [p for p in files if is_image(p)]
    sides = [[p for p in files if side_of(p) == side and is_image_file(p) and not is_image(p)]
             for side in ("left", "right")]
    for p in files:
        if not is_image_file(p):
            summary.add("not_an_image", p)
        elif not is_image(p) and side_of(p) not in ("left", "right"):
            summary.add("unused_structure", p)
    if not images:
        raise DataError(root, f"no {images_name} found under it")
    if not any(sides):
        raise DataError(root, "no left / right lung mask files found under it")
    records = _pair(images, sides, summary, lambda i, m: Record(i.stem, i, m))
    if not records:
        raise DataError(root, "no image under it has all its lung masks")
    return records, summary


def read_montgomery(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
    """Montgomery ``CXR_png/*.png`` + ``ManualMask/{leftMask,rightMask}/*.png`` (found
    anywhere under root), paired by file name."""
    return _read_lung_set(root, lambda p: is_image_file(p) and p.parent.name.lower() == "cxr_png",
                          "CXR_png/*.png images")


def read_jsrt(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
    """JSRT ``*.IMG`` with the SCR ``left lung/*.gif`` and ``right lung/*.gif`` masks (found
    anywhere under root), paired by stem. SCR masks are 1024x1024 for the 2048x2048 images."""
    return _read_lung_set(root, lambda p: p.suffix.lower() == ".img", "JSRT .IMG files")
