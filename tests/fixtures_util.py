"""Tiny on-disk fixtures in the exact folder layouts of each dataset.

Images are constant gray levels (so every resize keeps the value exactly and a
record can be identified by its pixels); masks are axis-aligned rectangles on
even pixel boundaries (so a x2 bilinear resize + ``>= 0.5`` is exact).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

S = 32  # fixture side; builds use size 32 unless a test says otherwise


def lung_rects(side: int = S) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) lung masks, uint8 0/255, rectangles scaled with ``side``."""
    k = side // 16
    left = np.zeros((side, side), np.uint8)
    right = np.zeros((side, side), np.uint8)
    left[4 * k:12 * k, 2 * k:7 * k] = 255
    right[4 * k:12 * k, 9 * k:14 * k] = 255
    return left, right


def union01(side: int = S) -> np.ndarray:
    left, right = lung_rects(side)
    return ((left > 0) | (right > 0)).astype(np.uint8)


def _mk(path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_image(path, arr, fmt: str | None = None, **kw) -> Path:
    path = _mk(path)
    Image.fromarray(np.asarray(arr)).save(path, format=fmt, **kw)
    return path


def write_jpeg(path, value: int, side: int = S, rgb: bool = False) -> Path:
    arr = np.full((side, side, 3) if rgb else (side, side), value, np.uint8)
    return write_image(path, arr, fmt='JPEG', quality=95)


def write_png(path, arr) -> Path:
    return write_image(path, arr, fmt='PNG')


def write_gif(path, arr) -> Path:
    return write_image(path, arr, fmt='GIF')


def write_junk(path, content: bytes = b'junk') -> Path:
    path = _mk(path)
    path.write_bytes(content)
    return path


def write_jsrt_img(path, raw12: np.ndarray) -> Path:
    path = _mk(path)
    np.asarray(raw12, dtype='>u2').tofile(path)
    return path


def truncated_copy(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    return write_junk(dst, data[: int(len(data) * keep)])


def jsrt_gray(raw: int) -> int:
    """Expected 8-bit gray of a JSRT raw value (inverted 12-bit)."""
    return int(np.floor((4095 - raw) * 255 / 4095 + 0.5))


# --------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------


def make_kermany(root: Path) -> dict[str, tuple[int, int]]:
    """root/chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg (+ junk).

    Returns {split: (n_normal, n_pneumonia)}. Gray value of each image:
    NORMAL 40 + 10*i, PNEUMONIA 160 + 10*i.
    """
    counts = {'train': (3, 4), 'val': (1, 1), 'test': (2, 2)}
    base = Path(root) / 'chest_xray'
    for split, (nn, npn) in counts.items():
        for i in range(nn):
            write_jpeg(base / split / 'NORMAL' / f'IM-{i:04d}-0001.jpeg', 40 + 10 * i)
        for i in range(npn):
            write_jpeg(base / split / 'PNEUMONIA' / f'person{i}_bacteria_{i}.jpeg', 160 + 10 * i,
                                  rgb=(i == 0))
    write_junk(base / 'train' / 'NORMAL' / '.DS_Store')
    write_junk(base / 'test' / 'PNEUMONIA' / 'Thumbs.db')
    write_junk(Path(root) / '__MACOSX' / 'chest_xray' / '._x.jpeg')
    return counts


JSRT_RAW = {'JPCLN001': 100, 'JPCLN002': 1000, 'JPCLN003': 2000, 'JPCNN001': 3000,
                        'JPCNN002': 4000, 'JPCNN003': 4095}


def make_jsrt(root: Path, side: int = S) -> None:
    """root/All247images/*.IMG (side x side) + root/scr/scratch/fold{1,2}/masks/
    {left lung,right lung,heart}/*.gif at half resolution (as the real SCR
    masks: 1024 for 2048). JPCNN099 has no masks."""
    root = Path(root)
    for i, (stem, raw) in enumerate(JSRT_RAW.items()):
        write_jsrt_img(root / 'All247images' / f'{stem}.IMG', np.full((side, side), raw))
        fold = 'fold1' if i % 2 == 0 else 'fold2'
        left, right = lung_rects(side // 2)
        mdir = root / 'scr' / 'scratch' / fold / 'masks'
        write_gif(mdir / 'left lung' / f'{stem}.gif', left)
        write_gif(mdir / 'right lung' / f'{stem}.gif', right)
        write_gif(mdir / 'heart' / f'{stem}.gif', np.zeros((side // 2, side // 2), np.uint8))
    write_jsrt_img(root / 'All247images' / 'JPCNN099.IMG', np.zeros((side, side)))
    write_junk(root / 'All247images' / 'CLNDAT_EN.txt', b'JPCLN001.IMG\t3\n')
    write_junk(root / 'All247images' / 'Thumbs.db')


def make_montgomery(root: Path, side: int = S) -> dict[str, int]:
    """root/MontgomerySet/CXR_png/MCUCXR_000i_{0,1}.png + ManualMask/{left,right}Mask.
    MCUCXR_0005_1 has no masks. Returns {stem: gray}."""
    base = Path(root) / 'MontgomerySet'
    grays = {}
    left, right = lung_rects(side)
    for i in range(1, 6):
        stem = f'MCUCXR_{i:04d}_{i % 2}'
        grays[stem] = 20 * i
        write_png(base / 'CXR_png' / f'{stem}.png', np.full((side, side), 20 * i, np.uint8))
        if i < 5:
            write_png(base / 'ManualMask' / 'leftMask' / f'{stem}.png', left)
            write_png(base / 'ManualMask' / 'rightMask' / f'{stem}.png', right)
    write_junk(base / 'CXR_png' / 'Thumbs.db')
    write_junk(base / 'ClinicalReadings' / 'MCUCXR_0001_0.txt', b'normal')
    return grays


NIH_ROWS = [  # (file, labels, on disk)
        ('00000001_000.png', 'No Finding', True),
        ('00000002_000.png', 'No Finding', True),
        ('00000003_000.png', 'No Finding', True),
        ('00000004_000.png', 'Pneumonia', True),
        ('00000005_001.png', 'Infiltration|Pneumonia', True),
        ('00000006_000.png', 'Effusion', True),
        ('00000007_000.png', 'Pneumonia', False),  # missing on disk
]


def make_nih(root: Path, side: int = S) -> None:
    """root/images_001/images/*.png + root/Data_Entry_2017.csv; one file not in CSV."""
    root = Path(root)
    for i, (name, _, on_disk) in enumerate(NIH_ROWS):
        if on_disk:
            write_png(root / 'images_001' / 'images' / name, np.full((side, side), 10 + 30 * i, np.uint8))
    write_png(root / 'images_001' / 'images' / '00000099_000.png', np.zeros((side, side), np.uint8))
    with open(root / 'Data_Entry_2017.csv', 'w', newline='') as fh:
        w = csv.writer(fh)
        w.writerow(['Image Index', 'Finding Labels', 'Follow-up #', 'Patient ID', 'Patient Age',
                                'Patient Gender', 'View Position'])
        for i, (name, labels, _) in enumerate(NIH_ROWS):
            w.writerow([name, labels, 0, i + 1, 50, 'M', 'PA'])


def make_generic_cls(root: Path, split_layout: bool = False, side: int = S) -> None:
    """root/NORMAL (3) + root/pneumonia (4, lower case) [+ root/{train,val,test}/...]."""
    root = Path(root)
    parents = {'train': root / 'train', 'val': root / 'val', 'test': root / 'test'} \
            if split_layout else {None: root}
    for pname, parent in parents.items():
        for i in range(3):
            write_png(parent / 'NORMAL' / f'n{i}.png', np.full((side, side), 50 + i, np.uint8))
        for i in range(4):
            write_jpeg(parent / 'pneumonia' / f'p{i}.jpg', 150 + 10 * i, side)
        write_junk(parent / 'NORMAL' / '.DS_Store')
        write_junk(parent / 'pneumonia' / 'desktop.ini')
    write_junk(root / 'labels.csv', b'label,file\n')


def make_generic_seg(root: Path, side: int = S) -> None:
    """root/images/{a..d} + root/masks/{a_mask.png, b.png, c_mask.png, d.png},
    e.png without mask, masks/z_mask.png without image."""
    root = Path(root)
    union = union01(side) * 255
    for i, name in enumerate('abcd'):
        img = np.full((side, side), 60 + 20 * i, np.uint8)
        if name == 'b':
            write_jpeg(root / 'images' / 'b.jpg', 60 + 20 * i, side)
        else:
            write_png(root / 'images' / f'{name}.png', img)
        mname = f'{name}_mask.png' if name in 'ac' else f'{name}.png'
        write_png(root / 'masks' / mname, union)
    write_png(root / 'images' / 'e.png', np.zeros((side, side), np.uint8))
    write_png(root / 'masks' / 'z_mask.png', union)
    write_junk(root / 'images' / 'Thumbs.db')
