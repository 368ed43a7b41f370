"""Records and folders to numpy arrays, without TFDS (docs/multimix.md, Data)."""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from multimix_jax.datasets import layouts
from multimix_jax.errors import DataError
from multimix_jax.datasets.image_io import (load_grayscale, load_mask, resize_image,
                                            resize_mask)

log = logging.getLogger("multimix_jax")
_SPLIT_RANK = {"train": 0, "validation": 1, "test": 2}


def fingerprint(root: os.PathLike | str) -> str:
    """sha256 of the file listing under ``root``: relative paths, sizes and mtimes."""
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            st, rel = p.stat(), p.relative_to(root).as_posix()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def load_example(record: layouts.Record, size: int, *,
                 masks_same_aspect: bool = False) -> dict[str, np.ndarray]:
    """``{'image': uint8 (size, size)[, 'mask': ...]}``; a record's masks (left and right lung)
    are united at their native size, then resized. A mask must have its image's size or,
    if ``masks_same_aspect`` (JSRT), its aspect ratio."""
    image = load_grayscale(record.image_path)
    out = {"image": resize_image(image, size)}
    if record.mask_paths:
        masks = [load_mask(m) for m in record.mask_paths]
        ih, iw = image.shape
        for (mh, mw), path in zip((m.shape for m in masks), record.mask_paths):
            same_aspect = abs(mh * iw - mw * ih) <= 0.01 * ih * iw
            if (mh, mw) != (ih, iw) and not (masks_same_aspect and same_aspect):
                raise DataError(path, f"mask is {mw}x{mh} (WxH) but its image {record.image_path} "
                                f"is {iw}x{ih}; masks must match their image"
                                + (" in aspect ratio" if masks_same_aspect else ""))
            if (mh, mw) != masks[0].shape:
                raise DataError(path, f"mask is {(mh, mw)} but {record.mask_paths[0]} of the "
                                f"same image is {masks[0].shape}")
        out["mask"] = resize_mask(np.logical_or.reduce(masks), size)
    return out


def load_records(records: Sequence[layouts.Record], size: int, *, kind: str,
                 masks_same_aspect: bool = False) -> dict[str, np.ndarray]:
    """``image`` (N, size, size) uint8, ``label`` (N,) int64 or ``mask`` (N, size, size)
    uint8, ``key`` (N,) str, and ``split`` (N,) str when the records carry splits."""
    fn = functools.partial(load_example, size=size, masks_same_aspect=masks_same_aspect)
    with concurrent.futures.ThreadPoolExecutor() as pool:  # Pillow decodes without the GIL
        try:
            examples = list(pool.map(fn, records))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the first error wins; skip the rest
            raise
    out = {"image": np.stack([e["image"] for e in examples])}
    if kind == "segmentation":
        out["mask"] = np.stack([e["mask"] for e in examples])
    elif kind == "classification":
        out["label"] = np.array([-1 if r.label is None else r.label for r in records], np.int64)
    out["key"] = np.array([r.key for r in records], dtype=str)
    if any(r.split is not None for r in records):
        out["split"] = np.array([r.split or "" for r in records], dtype=str)
    return out


# kind -> the reader of its folders ('unlabeled': any layout, every image, labels ignored)
READERS = {"classification": layouts.read_classification_folder,
           "segmentation": layouts.read_segmentation_folder,
           "unlabeled": layouts.read_image_tree}


def load_folder(root: os.PathLike | str, kind: str, size: int) -> dict:
    """A class folder (``ROOT/<class>/*`` or ``ROOT/<split>/<class>/*``) or a segmentation
    folder (``ROOT/images`` + ``ROOT/masks``) as read-only arrays (:func:`load_records`, by
    key) after :func:`drop_duplicate_images`; read once per (folder, kind, size, file
    listing) in a process."""
    path = Path(root).expanduser().resolve()
    if kind not in READERS:
        raise ValueError(f"kind must be one of {sorted(READERS)}, got {kind!r}")
    if not path.is_dir():
        raise DataError(root, "data folder does not exist" if not path.exists() else "not a folder")
    return dict(_load_folder_cached(str(path), kind, int(size), fingerprint(path)))


@functools.lru_cache(maxsize=4)
def _load_folder_cached(root: str, kind: str, size: int, listing: str) -> dict:
    del listing  # part of the cache key only: an edited folder is read again
    records, summary = READERS[kind](root)
    if summary:
        log.info("%s: %s", root, summary)
    arrays = drop_duplicate_images(load_records(records, size, kind=kind), root)
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


def drop_duplicate_images(arrays: dict, where: str = "") -> dict:
    """Keeps one copy of identical images so that no held-out split holds a training image:
    the copy in the earliest of train, validation, test (else the first). Copies that
    disagree on their label (or mask) are ALL dropped, with a warning naming them: which
    label is right is unknown. The kept examples stay in their original order."""
    n = len(arrays["image"])
    digest = lambda a: hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).digest()
    target = "label" if "label" in arrays else "mask" if "mask" in arrays else "image"
    splits = arrays.get("split", [""] * n)
    copies = collections.defaultdict(list)  # image digest -> its indices, earliest split first
    for i in sorted(range(n), key=lambda i: (_SPLIT_RANK.get(str(splits[i]), 3), i)):
        copies[digest(arrays["image"][i])].append(i)
    keep, conflicts = [], []
    for group in copies.values():
        if len({digest(arrays[target][i]) for i in group}) > 1:
            conflicts.append(group)
        else:
            keep.append(group[0])
    if conflicts:
        keys = arrays.get("key", np.arange(n).astype(str))
        what = lambda i: f"label {arrays['label'][i]}" if target == "label" else "its own mask"
        named = ["; ".join(f"{keys[i]} ({what(i)})" for i in group) for group in conflicts[:20]]
        log.warning("%s: %d images occur with different %ss, all their copies are dropped (which "
                    "is right is unknown): %s", where, len(conflicts), target, " | ".join(named))
    keep = np.sort(np.array(keep, dtype=np.int64))
    if len(keep) < n:
        dropped = np.setdiff1d(np.arange(n), keep)
        per_split = collections.Counter(arrays["split"][dropped]) if "split" in arrays else ""
        log.info("%s: dropped %d duplicate images %s", where, len(dropped), per_split)
    return {k: v[keep] for k, v in arrays.items()}
