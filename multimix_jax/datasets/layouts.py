"""Readers of each manual-download folder layout: ``(records, skip summary)``, no pixels.

Records are sorted by key: the file stem for sets with official ids (JSRT,
Montgomery, Shenzhen, NIH), the path relative to the root otherwise. Files
deliberately not used are counted by reason in a :class:`SkipSummary`
(``ignored_system_file``, ``not_an_image``, ``outside_class_folder``,
``unexpected_folder``, ``unknown_class``, ``image_without_mask``,
``mask_without_image``, ``unused_structure``, ``other_finding``, ``not_in_csv``,
``missing_image``); structural problems raise
:class:`~multimix_jax.datasets.image_io.DataError` naming the path.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from multimix_jax.datasets.image_io import DataError, is_ignorable, is_image_file

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "validation",
                 "valid": "validation", "validation": "validation", "test": "test",
                 "testing": "test"}
_MASK_SUFFIX = re.compile(r"[_\-]?mask$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Record:
    """One example: its files, and its label / split / metadata when known."""

    key: str
    image_path: Path
    mask_paths: tuple[Path, ...] = ()
    label: int | None = None
    split: str | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)


class SkipSummary(collections.Counter):
    """Counts of skipped files by reason, with up to five example paths each."""

    def __init__(self):
        super().__init__()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)

    def add(self, reason: str, path: os.PathLike | str | None = None, n: int = 1) -> None:
        self[reason] += n
        if path is not None and len(self.examples[reason]) < 5:
            self.examples[reason].append(os.fspath(path))

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total(), "counts": dict(sorted(self.items())),
                "examples": dict(sorted(self.examples.items()))}

    def __str__(self) -> str:
        lines = [f"skipped {self.total()} files" + (":" if self else "")]
        lines += [f"  {r}: {n} (e.g. {', '.join(self.examples[r][:3])})"
                  for r, n in sorted(self.items())]
        return "\n".join(lines)


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
    files = _walk(root, summary)
    for p in files:
        if not is_image_file(p):
            summary.add("not_an_image", p)
    return [p for p in files if is_image_file(p)]


def _subdirs(d: Path) -> list[Path]:
    return sorted(c for c in d.iterdir() if c.is_dir() and not is_ignorable(c))


def _find_dirs(root: Path, names: Iterable[str]) -> list[Path]:
    """Folders under root (root included) named like ``names`` (case, spaces, _ and - ignored),
    shallowest first."""
    norm = lambda s: re.sub(r"[\s_\-]+", "", s.lower())
    wanted = {norm(n) for n in names}
    found = [Path(d) for d, _, _ in os.walk(root) if norm(Path(d).name) in wanted
             and not is_ignorable(Path(d).relative_to(root))]
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


def _find_dir(root: Path, names: Sequence[str]) -> Path:
    found = _find_dirs(root, names)
    if not found:
        raise DataError(root, f"no {' or '.join(names)} folder found under it")
    return found[0]


def _index(paths: Iterable[Path], key: Callable[[Path], str], what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in paths:
        k = key(p).lower()
        if k in out:
            raise DataError(p, f"two {what} files for the same id {k!r} (also {out[k]})")
        out[k] = p
    return out


def pair_by_stem(images: Mapping[str, Path], mask_sets: Sequence[Mapping[str, Path]],
                 summary: SkipSummary, make: Callable[[Path, tuple[Path, ...]], Record],
                 ) -> list[Record]:
    """Records of the images that have a mask in every one of ``mask_sets`` (all keyed by
    lower-case stem); the others are counted as ``image_without_mask``, unused masks as
    ``mask_without_image``."""
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


def _class_records(parent: Path, root: Path, class_names: Sequence[str], split: str | None,
                   allow_unknown: bool, summary: SkipSummary) -> list[Record]:
    index = {c.lower(): i for i, c in enumerate(class_names)}
    for f in sorted(parent.iterdir()):
        if f.is_file():
            summary.add("ignored_system_file" if is_ignorable(f) else "outside_class_folder", f)
        elif is_ignorable(f):
            summary.add("ignored_system_file", f)
    if not _subdirs(parent):
        raise DataError(parent, f"no class folders found (expected {', '.join(class_names)})")
    records = []
    for d in _subdirs(parent):
        label = index.get(d.name.lower())
        if label is None and not allow_unknown:
            raise DataError(d, f"unknown class folder {d.name!r}; expected one of "
                            f"{list(class_names)} (case-insensitive)")
        if label is None:
            summary.add("unknown_class", d, n=max(1, len(_walk(d, SkipSummary()))))
            continue
        files = _images(d, summary)
        if not files:
            raise DataError(d, f"class folder {d.name!r} contains no images")
        records += [Record(f.relative_to(root).as_posix(), f, label=label, split=split)
                    for f in files]
    return records


def read_classification_folder(root: os.PathLike | str,
                               class_names: Sequence[str] = CLASS_NAMES, *,
                               allow_unknown: bool = False, skip_other_folders: bool = False,
                               ) -> tuple[list[Record], SkipSummary]:
    """``ROOT/<class>/*`` or ``ROOT/<split>/<class>/*`` (split folders train, val, test and
    aliases); class folders match ``class_names`` case-insensitively, label = position.
    Unknown class folders (and, next to split folders, other folders) are an error unless
    ``allow_unknown`` (or ``skip_other_folders``), then counted."""
    root = _check_dir(root)
    summary = SkipSummary()
    splits = [d for d in _subdirs(root) if d.name.lower() in SPLIT_ALIASES]
    if not splits:
        records = _class_records(root, root, class_names, None, allow_unknown, summary)
    else:
        records = []
        for d in _subdirs(root):
            if d in splits:
                records += _class_records(d, root, class_names, SPLIT_ALIASES[d.name.lower()],
                                          allow_unknown, summary)
            elif allow_unknown or skip_other_folders:
                summary.add("unexpected_folder", d)
            else:
                raise DataError(d, f"unexpected folder {d.name!r} next to the split folders "
                                f"{[s.name for s in splits]}")
        for f in sorted(root.iterdir()):
            if not f.is_dir() or is_ignorable(f):
                summary.add("ignored_system_file" if is_ignorable(f) else "outside_class_folder", f)
    if not records:
        raise DataError(root, "no images found")
    return sorted(records, key=lambda r: r.key), summary


def read_kermany(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
    """Kermany ``chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}``; ``root`` may be any parent
    (the Kaggle archive nests ``chest_xray/chest_xray``): the shallowest folder holding split
    folders wins, other folders next to the splits are counted as ``unexpected_folder``."""
    root = _check_dir(root)
    for base in [root] + _find_dirs(root, ["chest_xray"]):
        if any(d.name.lower() in SPLIT_ALIASES for d in _subdirs(base)):
            return read_classification_folder(base, skip_other_folders=True)
    raise DataError(root, "no chest_xray/{train,val,test}/{NORMAL,PNEUMONIA} folders found")


def read_nih_pneumonia(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
    """NIH ChestX-ray14 ``images*/**.png`` + ``Data_Entry_2017.csv`` (split 'test').

    PNEUMONIA if 'Pneumonia' is among the '|'-separated 'Finding Labels', NORMAL if they are
    exactly 'No Finding', else ``other_finding``; rows without a file are ``missing_image``,
    files without a row ``not_in_csv``."""
    root = _check_dir(root)
    summary = SkipSummary()
    files = _walk(root, summary)
    tables = sorted((p for p in files if p.name.lower().startswith("data_entry")
                     and p.suffix.lower() == ".csv"), key=lambda p: (len(p.parts), str(p)))
    if not tables:
        raise DataError(root, "no Data_Entry_2017.csv found under it")
    for p in files:
        if p != tables[0] and not is_image_file(p):
            summary.add("not_an_image", p)
    images = _index((p for p in files if is_image_file(p)), lambda p: p.name, "image")
    try:
        with open(tables[0], newline="", encoding="utf-8-sig") as fh:
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k}
                    for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(tables[0], f"cannot read the CSV ({e})") from None
    if rows and not {"Image Index", "Finding Labels"} <= set(rows[0]):
        raise DataError(tables[0], f"needs columns 'Image Index' and 'Finding Labels', "
                        f"has {sorted(rows[0])}")
    records = []
    for row in rows:
        name, findings = row["Image Index"], {f.strip() for f in row["Finding Labels"].split("|")}
        label = 1 if "Pneumonia" in findings else 0 if findings == {"No Finding"} else None
        image = images.pop(name.lower(), None)
        if image is None:
            if label is not None:
                summary.add("missing_image", name)
        elif label is None:
            summary.add("other_finding", image)
        else:
            records.append(Record(image.name, image, label=label, split="test"))
    for image in images.values():
        summary.add("not_in_csv", image)
    if not records:
        raise DataError(root, "no NIH images labelled Pneumonia or No Finding found")
    return sorted(records, key=lambda r: r.key), summary


def _stem(base: Path | None = None) -> Callable[[Path], str]:
    """Key of a file: its path relative to ``base`` (else its name) without extension."""
    return lambda p: (p.relative_to(base) if base else Path(p.name)).with_suffix("").as_posix()


def _mask_stem(base: Path | None = None) -> Callable[[Path], str]:
    return lambda p: _MASK_SUFFIX.sub("", _stem(base)(p))


def read_segmentation_folder(root: os.PathLike | str, *, strict: bool = False,
                             ) -> tuple[list[Record], SkipSummary]:
    """``ROOT/images/*`` + ``ROOT/masks/*`` paired by relative path without extension,
    case-insensitively; a mask may end in ``_mask``. ``strict``: an image without mask is
    an error instead of a counted skip."""
    root = _check_dir(root)
    summary = SkipSummary()
    image_dirs = [d for d in _subdirs(root) if d.name.lower() in ("images", "image", "imgs")]
    mask_dirs = [d for d in _subdirs(root) if d.name.lower() in ("masks", "mask")]
    if not image_dirs or not mask_dirs:
        raise DataError(root, "expected the sub-folders images/ and masks/")
    img_dir, mask_dir = image_dirs[0], mask_dirs[0]
    images = _index(_images(img_dir, summary), _stem(img_dir), "image")
    masks = _index(_images(mask_dir, summary), _mask_stem(mask_dir), "mask")
    records = pair_by_stem(images, [masks], summary,
                           lambda i, m: Record(i.relative_to(root).as_posix(), i, m))
    if strict and summary["image_without_mask"]:
        raise DataError(summary.examples["image_without_mask"][0], f"image has no mask in {mask_dir}")
    if not records:
        raise DataError(root, "no image/mask pairs found")
    return records, summary


def _abnormal(image: Path) -> dict[str, int | None]:
    """Montgomery/Shenzhen: the name's last digit (0 normal, 1 tuberculosis), metadata only."""
    m = re.search(r"_(\d)$", image.stem)
    return {"abnormal": int(m.group(1)) if m else None}


def _stem_records(root: Path, images: Mapping[str, Path], mask_sets: Sequence[Mapping],
                  summary: SkipSummary) -> list[Record]:
    """Records keyed by image stem, with the name's ``abnormal`` digit as metadata."""
    make = lambda i, m: Record(i.stem, i, m, meta=_abnormal(i))
    records = pair_by_stem(images, mask_sets, summary, make)
    if not records:
        raise DataError(root, "no image under it has all its lung masks")
    return records


def read_montgomery(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
    """Montgomery ``CXR_png/*.png`` + ``ManualMask/{leftMask,rightMask}/*.png`` (found
    anywhere under root), paired by file name."""
    root, summary = _check_dir(root), SkipSummary()
    images = _index(_images(_find_dir(root, ["CXR_png"]), summary), _stem(), "image")
    sides = [_index(_images(_find_dir(root, [n]), summary), _stem(), "mask")
             for n in ("leftMask", "rightMask")]
    return _stem_records(root, images, sides, summary), summary


def read_shenzhen(root: os.PathLike | str) -> tuple[list[Record], SkipSummary]:
    """Shenzhen ``CXR_png/*.png`` + ``mask/*_mask.png`` (found anywhere under root); images
    without a mask are counted as ``image_without_mask``."""
    root, summary = _check_dir(root), SkipSummary()
    img_dir = _find_dir(root, ["CXR_png"])
    mask_dirs = [d for d in _find_dirs(root, ["mask", "masks"]) if img_dir not in d.parents]
    if not mask_dirs:
        raise DataError(root, "no mask/ folder found under it")
    images = _index(_images(img_dir, summary), _stem(), "image")
    masks = _index(_images(mask_dirs[0], summary), _mask_stem(), "mask")
    return _stem_records(root, images, [masks], summary), summary


def read_jsrt(root: os.PathLike | str, scr_root: os.PathLike | str | None = None,
              ) -> tuple[list[Record], SkipSummary]:
    """JSRT ``*.IMG`` anywhere under ``root`` with the SCR ``left lung/*.gif`` and
    ``right lung/*.gif`` masks anywhere under ``scr_root`` (default ``root``), paired by
    stem; other SCR structures (heart, clavicles) count as ``unused_structure``. SCR masks
    are 1024x1024 for the 2048x2048 images."""
    root, summary = _check_dir(root), SkipSummary()
    files = _walk(root, summary)
    if scr_root is not None and root not in Path(scr_root).parents and Path(scr_root) != root:
        files = sorted(set(files + _walk(_check_dir(scr_root), summary)))
    side_of = lambda p: re.sub(r"[\s_\-]+|lung|mask", "", p.parent.name.lower())
    images = _index((p for p in files if p.suffix.lower() == ".img"), _stem(), "image")
    sides = [_index((p for p in files if side_of(p) == s and is_image_file(p)
                     and p.suffix.lower() != ".img"), _stem(), "mask") for s in ("left", "right")]
    for p in files:
        if not is_image_file(p):
            summary.add("not_an_image", p)
        elif p.suffix.lower() != ".img" and side_of(p) not in ("left", "right"):
            summary.add("unused_structure", p)
    if not images:
        raise DataError(root, "no JSRT .IMG files found under it")
    if not any(sides):
        raise DataError(scr_root or root, "no SCR 'left lung'/'right lung' mask files found")
    return _stem_records(root, images, sides, summary), summary
