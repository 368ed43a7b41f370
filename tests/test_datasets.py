"""Tests of the real-data layer: pixel I/O, folder layouts, folder arrays, TFDS builders.

Every layout has a tiny fixture in exactly that layout (tests/fixtures_util.py), built at
32 px into tmp_path and read back. Tests on the real data skip when it is absent.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multimix_jax import sources
from multimix_jax.datasets import builders as B
from multimix_jax.datasets import folders
from multimix_jax.datasets import image_io as io_
from multimix_jax.datasets import layouts as L
from multimix_jax.errors import DataError
from tests import fixtures_util as F

REAL = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
S = F.S


def _real(sub: str) -> Path:
    p = REAL / sub
    if not p.is_dir():
        pytest.skip(f"real data {p} not present")
    return p


def _read_all(builder, split):
    src = builder.as_data_source(split=split)
    return {ex["key"].decode(): ex for ex in (src[i] for i in range(len(src)))}


def _sizes(builder):
    return {k: v.num_examples for k, v in builder.info.splits.items()}


def _save(tmp_path, name, img: Image.Image, **kw) -> Path:
    img.save(tmp_path / name, **kw)
    return tmp_path / name


# --------------------------------------------------------------------------- image_io
def test_rgb_png_luma_exact(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [100, 100, 100]]], np.uint8)
    g = io_.load_grayscale(_save(tmp_path, "rgb.png", Image.fromarray(rgb)))
    assert g.dtype == np.uint8
    np.testing.assert_array_equal(g, [[76, 150], [29, 100]])  # ITU-R 601-2 luma


def test_alpha_composited_on_black(tmp_path):
    rgba = np.array([[[200, 200, 200, 255], [200, 200, 200, 128], [200, 200, 200, 0]]], np.uint8)
    p = _save(tmp_path, "rgba.png", Image.fromarray(rgba, "RGBA"))
    np.testing.assert_array_equal(io_.load_grayscale(p), [[200, 100, 0]])  # 200*128/255=100.4
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (90, 255))
    la.putpixel((1, 0), (90, 51))
    np.testing.assert_array_equal(io_.load_grayscale(_save(tmp_path, "la.png", la)), [[90, 18]])


def test_palette_png_and_gif(tmp_path):
    pal = Image.new("P", (3, 1))
    pal.putpalette([0, 0, 0, 255, 0, 0, 255, 255, 255] + [0] * (3 * 253))
    for x in range(3):
        pal.putpixel((x, 0), x)
    for name in ("pal.png", "pal.gif"):
        gray = io_.load_grayscale(_save(tmp_path, name, pal))
        np.testing.assert_array_equal(gray, [[0, 76, 255]])


def test_16bit_scaled_by_bit_depth_not_clipped(tmp_path):
    p = _save(tmp_path, "a16.png", Image.fromarray(np.array([[0, 65535, 32768, 1000]], np.uint16)))
    np.testing.assert_array_equal(io_.load_grayscale(p), [[0, 255, 128, 4]])
    p = _save(tmp_path, "a12.png", Image.fromarray(np.array([[0, 4095, 2048, 1000]], np.uint16)))
    np.testing.assert_array_equal(io_.load_grayscale(p), [[0, 255, 128, 62]])  # 12-bit data


def test_float_and_1bit_images(tmp_path):
    p = _save(tmp_path, "f.tif", Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)))
    np.testing.assert_array_equal(io_.load_grayscale(p), [[0, 128, 255]])
    b = Image.new("1", (2, 1))
    b.putpixel((1, 0), 1)
    np.testing.assert_array_equal(io_.load_grayscale(_save(tmp_path, "b.png", b)), [[0, 255]])
    nan = _save(tmp_path, "nan.tif", Image.fromarray(np.array([[0.0, np.nan]], np.float32)))
    with pytest.raises(DataError, match="nan.tif.*NaN"):
        io_.load_grayscale(nan)


def test_large_and_unicode_named_files(tmp_path):
    p = F.write_png(tmp_path / "rö_ntgen 胸部.png", np.full((4000, 4000), 7, np.uint8))
    g = io_.load_grayscale(p)
    assert g.shape == (4000, 4000) and np.all(io_.resize_image(g, 16) == 7)


@pytest.mark.parametrize("kind", ["truncated_jpeg", "truncated_png", "flipped_bytes", "zero_byte",
                                  "text_png", "missing", "folder"])
def test_bad_files_raise_dataerror_naming_file(tmp_path, kind):
    arr = (np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)
    p = tmp_path / "bad.png"
    if kind == "truncated_jpeg":
        p = F.truncated_copy(F.write_image(tmp_path / "ok.jpg", arr, fmt="JPEG"),
                             tmp_path / "bad.jpg")
    elif kind == "flipped_bytes":
        data = bytearray(F.write_png(p, arr).read_bytes())
        data[len(data) // 2] ^= 0xFF  # the PNG checksum no longer matches
        p.write_bytes(bytes(data))
    elif kind == "truncated_png":
        F.truncated_copy(F.write_png(tmp_path / "ok.png", arr), p)
    elif kind in ("zero_byte", "text_png"):
        F.write_junk(p, b"" if kind == "zero_byte" else b"this is not an image\n")
    elif kind == "folder":
        p.mkdir()
    for load in (io_.load_grayscale, io_.load_mask):
        with pytest.raises(DataError) as e:
            load(p)
        assert str(e.value).startswith(str(p)) and e.value.path == p


def test_load_mask_binarisation_and_alpha(tmp_path):
    cases = [(F.write_png, "a.png", np.uint8([[0, 127, 128, 255]]), [[0, 0, 1, 1]]),  # 0/255
             (F.write_png, "b.png", np.uint8([[0, 1, 1, 0]]), [[0, 1, 1, 0]]),  # 0/1
             (F.write_gif, "c.gif", np.uint8([[0, 255]]), [[0, 1]]),
             (F.write_png, "d.png", np.uint16([[0, 65535]]), [[0, 1]])]
    for write, name, arr, want in cases:
        np.testing.assert_array_equal(io_.load_mask(write(tmp_path / name, arr)), want)
    rgba = np.full((1, 3, 4), 255, np.uint8)
    rgba[0, :, 3] = [0, 255, 255]  # mask drawn as transparency: alpha is the mask
    p = _save(tmp_path, "al.png", Image.fromarray(rgba, "RGBA"))
    np.testing.assert_array_equal(io_.load_mask(p), [[0, 1, 1]])
    pal = Image.new("P", (3, 1))
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * (3 * 254))
    pal.putpixel((1, 0), 1)
    pal.putpixel((2, 0), 1)
    p = _save(tmp_path, "tr.gif", pal, transparency=1)  # transparent foreground: colours win
    np.testing.assert_array_equal(io_.load_mask(p), [[0, 1, 1]])
    assert io_.load_grayscale(p).tolist() == [[0, 0, 0]]  # images ARE composited


def test_jsrt_img_inverted_and_sized(tmp_path):
    raw = np.zeros(io_.JSRT_SHAPE, np.uint16)
    raw[0, :4] = [0, 4095, 2048, 3500]
    p = F.write_jsrt_img(tmp_path / "JPCLN001.IMG", raw)
    g = io_.load_grayscale(p)
    assert g.shape == (2048, 2048) and tuple(g[0, :4]) == (255, 0, 127, F.jsrt_gray(3500))
    small = F.write_jsrt_img(tmp_path / "x.IMG", np.full((16, 16), 3500))
    with pytest.raises(DataError, match="x.IMG.*truncated or not a JSRT"):
        io_.load_grayscale(small)
    with pytest.raises(DataError, match="y.IMG: 0 bytes"):
        io_.load_jsrt_img(F.write_junk(tmp_path / "y.IMG", b""))


def test_resize_image_and_mask_analytic():
    assert np.all(io_.resize_image(np.full((64, 48), 77, np.uint8), 32) == 77)
    assert io_.resize_image(np.zeros((64, 48), np.uint8), 20).shape == (20, 20)  # squashed
    np.testing.assert_array_equal(io_.resize_mask(F.union01(64), 32), F.union01(32))
    np.testing.assert_array_equal(io_.resize_mask(F.union01(16) * 255, 32), F.union01(32))


def test_is_ignorable():
    for n in [".DS_Store", "Thumbs.db", "desktop.ini", ".hidden.png", "._I.jpeg", "__MACOSX/b.png"]:
        assert io_.is_ignorable(Path("x") / n), n
    assert not any(io_.is_ignorable(Path("x") / n) for n in ["IM-0001.jpeg", "a.png", "mask.gif"])


# --------------------------------------------------------------------------- layouts
def test_seeded_split_paper_counts_and_determinism():
    for cls, n, want in ((B.Jsrt, 247, (111, 13, 123)), (B.Montgomery, 138, (93, 10, 35))):
        keys = [f"k{i:03d}" for i in range(n)]
        s = B.seeded_split(keys, cls.VAL_FRACTION, cls.TEST_FRACTION, cls.SPLIT_SEED)
        assert tuple(len(s[k]) for k in ("train", "validation", "test")) == want
        assert s == B.seeded_split(keys[::-1], cls.VAL_FRACTION, cls.TEST_FRACTION, seed=0)
        assert s != B.seeded_split(keys, cls.VAL_FRACTION, cls.TEST_FRACTION, seed=1)


def test_classification_reader_flat_split_unknown_empty(tmp_path):
    F.make_generic_cls(tmp_path / "flat")
    recs, s = L.read_classification_folder(tmp_path / "flat")
    assert [r.label for r in recs] == [0, 0, 0, 1, 1, 1, 1] and all(r.split is None for r in recs)
    assert s["ignored_system_file"] == 2 and s["outside_class_folder"] == 1
    F.make_generic_cls(tmp_path / "split", split_layout=True)
    recs, s = L.read_classification_folder(tmp_path / "split")
    assert {r.split for r in recs} == {"train", "validation", "test"} and len(recs) == 21
    F.write_png(tmp_path / "split" / "other" / "NORMAL" / "o.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"other: unexpected folder 'other' next to the split"):
        L.read_classification_folder(tmp_path / "split")
    _, s = L.read_classification_folder(tmp_path / "split", skip_other_folders=True)
    assert s["unexpected_folder"] == 1
    F.write_png(tmp_path / "flat" / "COVID" / "c.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"COVID: unknown class folder 'COVID'; expected one of "
                       r"\['NORMAL', 'PNEUMONIA'\] \(case-insensitive\)"):
        L.read_classification_folder(tmp_path / "flat")
    F.write_png(tmp_path / "empty" / "NORMAL" / "n.png", np.zeros((4, 4), np.uint8))
    F.write_junk(tmp_path / "empty" / "PNEUMONIA" / "notes.txt")
    with pytest.raises(DataError, match=r"PNEUMONIA: class folder 'PNEUMONIA' contains no images"):
        L.read_classification_folder(tmp_path / "empty")


def test_segmentation_reader_pairs_and_counts(tmp_path):
    F.make_generic_seg(tmp_path)
    recs, s = L.read_segmentation_folder(tmp_path)
    assert [r.key for r in recs] == ["images/a.png", "images/b.jpg", "images/c.png", "images/d.png"]
    assert [r.mask_paths[0].name for r in recs] == ["a_mask.png", "b.png", "c_mask.png", "d.png"]
    assert (s["image_without_mask"], s["mask_without_image"], s["ignored_system_file"]) == (1, 1, 1)
    with pytest.raises(DataError, match="expected the sub-folders images/ and masks/"):
        L.read_segmentation_folder(tmp_path / "images")


def test_kermany_jsrt_montgomery_nih_readers(tmp_path):
    F.make_kermany(tmp_path / "k")
    for root in (tmp_path / "k", tmp_path / "k" / "chest_xray"):
        recs, s = L.read_kermany(root)
        assert len(recs) == 13 and s["ignored_system_file"] == 2
    F.make_jsrt(tmp_path / "j")
    recs, s = L.read_jsrt(tmp_path / "j")
    assert [r.key for r in recs] == sorted(F.JSRT_RAW) and all(len(r.mask_paths) == 2 for r in recs)
    assert (s["image_without_mask"], s["unused_structure"], s["not_an_image"]) == (1, 6, 1)
    F.make_montgomery(tmp_path / "m")
    recs, s = L.read_montgomery(tmp_path / "m")
    assert [r.key for r in recs] == [f"MCUCXR_{i:04d}_{i % 2}" for i in range(1, 5)]
    assert [[p.parent.name for p in r.mask_paths] for r in recs] == [["leftMask", "rightMask"]] * 4
    assert (s["image_without_mask"], s["not_an_image"], s["ignored_system_file"]) == (1, 1, 1)
    with pytest.raises(DataError, match="no CXR_png/\\*.png images found under it"):
        L.read_montgomery(tmp_path / "j")
    F.make_nih(tmp_path / "n")
    recs, s = L.read_nih_pneumonia(tmp_path / "n")
    assert {r.key: r.label for r in recs} == {"00000001_000.png": 0, "00000002_000.png": 0,
                                              "00000003_000.png": 0, "00000004_000.png": 1,
                                              "00000005_001.png": 1}
    assert (s["other_finding"], s["missing_image"], s["not_in_csv"]) == (1, 1, 1)


# --------------------------------------------------------------------------- builders
def test_build_kermany(tmp_path):
    F.make_kermany(tmp_path / "manual")
    b = B.build_dataset("kermany", tmp_path / "manual", tmp_path / "tfds", 32)
    assert _sizes(b) == {"train": 7, "validation": 2, "test": 4}
    for key, e in _read_all(b, "train").items():
        cls, name = key.split("/")[1:]
        i = int(name.split("-")[1] if cls == "NORMAL" else name.split("_")[-1][0])
        assert e["label"] == (cls == "PNEUMONIA") and e["image"].shape == (S, S, 1)
        assert abs(int(e["image"].mean()) - (40 if cls == "NORMAL" else 160) - 10 * i) <= 2, key
    assert b.info.metadata["skipped"] == {"ignored_system_file": 2}
    assert "tensorflow" not in sys.modules


def test_build_segmentation_sets(tmp_path):
    F.make_jsrt(tmp_path / "j", side=2048)  # real sizes: 2048 px raw images, 1024 px SCR masks
    b = B.build_dataset("jsrt", tmp_path / "j", tmp_path / "tfds", 32)
    assert _sizes(b) == {"train": 2, "validation": 1, "test": 3}
    for split in _sizes(b):
        for key, e in _read_all(b, split).items():
            assert np.all(e["image"][..., 0] == F.jsrt_gray(F.JSRT_RAW[key]))
            np.testing.assert_array_equal(e["mask"][..., 0], F.union01(S))  # left OR right
    grays = F.make_montgomery(tmp_path / "m")
    b = B.build_dataset("montgomery", tmp_path / "m", tmp_path / "tfds", 32)
    assert _sizes(b) == {"train": 2, "validation": 1, "test": 1}
    examples = {k: e for s in _sizes(b) for k, e in _read_all(b, s).items()}
    assert sorted(examples) == [f"MCUCXR_{i:04d}_{i % 2}" for i in range(1, 5)]
    for key, e in examples.items():
        assert np.all(e["image"] == grays[key])
        np.testing.assert_array_equal(e["mask"][..., 0], F.union01(S))


def test_build_nih_test_only_with_subsampling(tmp_path, monkeypatch):
    F.make_nih(tmp_path / "manual")
    assert B.NihPneumonia.MAX_NORMAL == 2754
    monkeypatch.setattr(B.NihPneumonia, "MAX_NORMAL", 2)
    b = B.build_dataset("nih_pneumonia", tmp_path / "manual", tmp_path / "tfds", 32)
    assert sorted(int(e["label"]) for e in _read_all(b, "test").values()) == [0, 0, 1, 1]
    assert b.info.metadata["skipped"]["normal_subsampled"] == 1


def test_built_dataset_is_found_by_load_source(tmp_path):
    F.make_kermany(tmp_path / "manual")
    B.build_dataset("kermany", tmp_path / "manual", tmp_path / "tfds", 16)
    spec = {"kind": "tfds", "name": "kermany", "data_dir": str(tmp_path / "tfds")}
    src = sources.load_source(spec, "classification", 16, split="validation")
    assert len(src) == 2 and src[0]["image"].shape == (16, 16, 1)
    with pytest.raises(DataError, match="no kermany dataset at 32 px: build it with "
                       "scripts/build_dataset.py kermany --manual_dir DIR"):
        sources.load_source(spec, "classification", 32)
    F.make_nih(tmp_path / "nih")
    B.build_dataset("nih_pneumonia", tmp_path / "nih", tmp_path / "tfds", 16)
    spec = {**spec, "name": "nih_pneumonia"}
    with pytest.raises(ValueError, match=r"has no split 'train'; its splits are \['test'\]"):
        sources.load_source(spec, "classification", 16, split="train")


def test_rebuild_same_folder_reuses_other_folder_is_refused(tmp_path, monkeypatch):
    F.make_montgomery(tmp_path / "a")
    F.make_montgomery(tmp_path / "b", side=64)
    B.build_dataset("montgomery", tmp_path / "a", tmp_path / "tfds", 16)
    monkeypatch.setattr(B, "load_records", lambda *a, **k: pytest.fail("rebuilt"))
    B.build_dataset("montgomery", tmp_path / "a", tmp_path / "tfds", 16)
    F.write_junk(tmp_path / "a" / "notes.txt")  # the same folder, its files changed
    for manual in ("b", "a"):
        with pytest.raises(DataError, match="already holds .* pass --overwrite"):
            B.build_dataset("montgomery", tmp_path / manual, tmp_path / "tfds", 16)
    monkeypatch.undo()
    b = B.build_dataset("montgomery", tmp_path / "b", tmp_path / "tfds", 16, overwrite=True)
    assert b.info.metadata["source"] == str(tmp_path / "b")


def test_a_copy_of_the_folder_or_added_junk_is_the_same_source(tmp_path, monkeypatch):
    F.make_montgomery(tmp_path / "a")
    B.build_dataset("montgomery", tmp_path / "a", tmp_path / "tfds", 16)
    shutil.copytree(tmp_path / "a", tmp_path / "copy", copy_function=shutil.copy)  # new mtimes
    F.write_junk(tmp_path / "copy" / ".DS_Store")
    monkeypatch.setattr(B, "load_records", lambda *a, **k: pytest.fail("rebuilt"))
    B.build_dataset("montgomery", tmp_path / "copy", tmp_path / "tfds", 16)


def test_killed_build_leftovers_removed_and_failures_leave_nothing(tmp_path):
    manual, data_dir = tmp_path / "manual", tmp_path / "tfds"
    F.make_montgomery(manual)
    B.build_dataset("montgomery", manual, data_dir, 32)
    before = sorted(data_dir.rglob("*"))
    (data_dir / ".incomplete-killed" / "multimix_x").mkdir(parents=True)
    (data_dir / "multimix_montgomery" / "32px" / "incomplete.9_1.1.0").mkdir()
    bad = F.write_junk(manual / "MontgomerySet" / "CXR_png" / "MCUCXR_0002_0.png", b"")
    with pytest.raises(DataError, match="MCUCXR_0002_0.png: empty"):
        B.build_dataset("montgomery", manual, data_dir, 16)
    assert sorted(data_dir.rglob("*")) == before  # stale leftovers gone, 32 px dataset intact
    with pytest.raises(DataError, match=re.escape(str(bad))):
        B.build_dataset("montgomery", manual, tmp_path / "new", 16)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("bad", ["truncated", "zero_byte", "text_png", "mask_size", "unknown"])
def test_build_fails_naming_the_file(tmp_path, bad):
    manual = tmp_path / "manual"
    if bad == "mask_size":
        F.make_montgomery(manual)
        left = manual / "MontgomerySet" / "ManualMask" / "leftMask" / "MCUCXR_0002_0.png"
        p = F.write_png(left, F.union01(16) * 255)  # image is 32x32
        name, want = "montgomery", "mask is 16x16 (WxH) but its image"
    else:
        F.make_kermany(manual)
        train = manual / "chest_xray" / "train"
        name, want = "kermany", ""
        if bad == "truncated":
            src = F.write_image(tmp_path / "ok.jpg", np.zeros((64, 64), np.uint8), fmt="JPEG")
            p = F.truncated_copy(src, train / "PNEUMONIA" / "p9.jpg")
        elif bad == "unknown":
            p = F.write_png(train / "Covid" / "c.png", np.zeros((S, S), np.uint8)).parent
        else:
            p = F.write_junk(train / "NORMAL" / "n9.png", b"" if bad == "zero_byte" else b"no")
    with pytest.raises(DataError) as e:
        B.build_dataset(name, manual, tmp_path / "tfds", 32)
    assert str(e.value).startswith(str(p)) and want in str(e.value)
    assert not (tmp_path / "tfds").exists()


def test_cli(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    try:
        import build_dataset as cli
    finally:
        sys.path.pop(0)
    F.make_montgomery(tmp_path / "m")
    F.make_montgomery(tmp_path / "other")
    (tmp_path / "other" / "MontgomerySet" / "CXR_png" / "MCUCXR_0004_0.png").unlink()
    args = ["montgomery", "--data_dir", str(tmp_path / "tfds"), "--size", "32", "--manual_dir"]
    assert cli.main(args + [str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "image_without_mask: 1" in out and "train: 2 examples" in out
    assert cli.main(args + [str(tmp_path / "other")]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert cli.main(args + [str(tmp_path / "other"), "--overwrite"]) == 0
    assert "mask_without_image: 2" in capsys.readouterr().out


# --------------------------------------------------------------------------- folders
def test_load_folder_fixtures(tmp_path):
    F.make_generic_seg(tmp_path / "seg", side=64)  # 64 px files, read at 32
    a = folders.load_folder(tmp_path / "seg", "segmentation", 32)
    assert a["image"].shape == a["mask"].shape == (4, 32, 32) and a["image"][0, 0, 0] == 60
    assert list(a["key"]) == ["images/a.png", "images/b.jpg", "images/c.png", "images/d.png"]
    assert all(np.array_equal(m, F.union01(32)) for m in a["mask"])
    F.make_generic_cls(tmp_path / "cls", split_layout=True)
    c = folders.load_folder(tmp_path / "cls", "classification", 16)
    assert c["image"].shape == (7, 16, 16) and set(c["split"]) == {"train"}  # val/test: copies
    assert not c["image"].flags.writeable
    p = F.write_png(tmp_path / "seg" / "masks" / "d.png", F.union01(32) * 255)  # same aspect
    with pytest.raises(DataError, match=f"^{re.escape(str(p))}: mask is 32x32 \\(WxH\\) but its "
                       "image .*d.png is 64x64; masks must match their image$"):
        folders.load_folder(tmp_path / "seg", "segmentation", 32)


def test_folder_source_never_imports_tfds(tmp_path):
    F.make_generic_cls(tmp_path / "cls")
    code = ("import sys; from multimix_jax import sources; "
            f"s = sources.load_source({{'kind': 'folder', 'path': {str(tmp_path / 'cls')!r}}}, "
            "'classification', 16); "
            "assert len(s) == 7; assert 'tensorflow_datasets' not in sys.modules, 'tfds imported'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parents[1], env={"JAX_PLATFORMS": "cpu", "PATH": ""})
    assert run.returncode == 0, run.stderr[-2000:]


def test_folder_read_is_cached_until_the_folder_changes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i, cls in enumerate(["NORMAL", "PNEUMONIA"] * 2):
            F.write_png(tmp_path / split / cls / f"{i}.png", rng.integers(0, 256, (S, S), np.uint8))
    calls = []
    real = folders.load_example
    monkeypatch.setattr(folders, "load_example", lambda r, **k: calls.append(r) or real(r, **k))
    spec = {"kind": "folder", "path": str(tmp_path)}
    train = sources.load_source(spec, "classification", 16, split="train")
    val = sources.load_source(spec, "classification", 16, split="val")
    assert (len(train), len(val), len(calls)) == (4, 4, 8)  # the second read decoded nothing
    F.write_png(tmp_path / "val" / "NORMAL" / "n9.png", np.full((S, S), 99, np.uint8))
    assert len(sources.load_source(spec, "classification", 16, split="val")) == 5
    assert len(calls) == 17


def test_conflicting_duplicate_labels_drop_every_copy_with_a_warning(tmp_path, caplog):
    F.make_generic_cls(tmp_path)
    same = np.full((S, S), 123, np.uint8)
    F.write_png(tmp_path / "NORMAL" / "twin.png", same)
    F.write_png(tmp_path / "pneumonia" / "twin.png", same)
    F.write_png(tmp_path / "NORMAL" / "copy.png", np.full((S, S), 50, np.uint8))  # same as n0
    with caplog.at_level(logging.WARNING, logger="multimix_jax"):
        src = sources.load_source({"kind": "folder", "path": str(tmp_path)},
                                         "classification", S)
    assert len(src) == 7  # 7 fixture images + 3 new - 2 conflicting twins - 1 plain copy
    assert not any(np.all(src[i]["image"] == 123) for i in range(len(src)))
    warning = caplog.records[-1].getMessage()
    assert "NORMAL/twin.png (label 0)" in warning and "pneumonia/twin.png (label 1)" in warning
    assert "copy.png" not in warning


# --------------------------------------------------------------------------- real data
def test_real_openist_segmentation_arrays():
    a = folders.load_folder(_real("lung_masks_openist"), "segmentation", 64)
    assert a["image"].shape == a["mask"].shape == (199, 64, 64)
    frac = a["mask"].reshape(199, -1).mean(1)
    assert frac.min() > 0.05 and frac.max() < 0.7
    inside = (a["image"] * a["mask"]).sum() / a["mask"].sum()
    assert inside < (a["image"] * (1 - a["mask"])).sum() / (1 - a["mask"]).sum()  # lungs dark


def test_real_kermany_224_records():
    recs, s = L.read_classification_folder(_real("kermany_pneumonia_224/train"))
    assert [r.label for r in recs].count(0) == 1341 and len(recs) == 5216 and s.total() == 0
    a = folders.load_records(recs[::1000], 32, kind="classification")
    assert a["image"].shape == (6, 32, 32)


def test_real_kermany_fullres_mixed_modes():
    root = _real("kermany_pneumonia_fullres")
    a = folders.load_folder(root, "classification", 64)
    assert a["image"].shape == (100, 64, 64) and a["label"].tolist().count(0) == 50
    import csv
    rgb = [r for r in csv.DictReader(open(root / "labels.csv")) if r["mode"] == "RGB"][:2]
    for r in rgb:
        p = root / r["label"] / r["filename"]
        np.testing.assert_array_equal(io_.load_grayscale(p), np.asarray(Image.open(p).convert("L")))
