"""Tests of the real-dataset layer: pixel I/O, folder layouts, TFDS builders.

Every layout gets a tiny fixture in exactly that layout (tests/fixtures_util.py),
is built with TFDS at size 32 into tmp_path and read back through
``as_data_source``. Tests on the shared real data skip when it is absent.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multimix_jax.datasets import builders as B
from multimix_jax.datasets import image_io as io_
from multimix_jax.datasets import layouts as L
from multimix_jax.datasets.image_io import DataError
from tests import fixtures_util as F

REAL = (Path(__file__).parents[1] / '..' / 'shared' / 'data').resolve()
S = F.S


def _real(sub: str) -> Path:
  p = REAL / sub
  if not p.is_dir():
    pytest.skip(f'real data {p} not present')
  return p


def _read_all(builder, split):
  src = builder.as_data_source(split=split)
  out = [src[i] for i in range(len(src))]
  return {ex['key'].decode(): ex for ex in out}


def _assert_empty_dir(d: Path):
  assert not d.exists() or not any(d.rglob('*')), sorted(d.rglob('*'))


# ==========================================================================
# image_io
# ==========================================================================


def _save(tmp_path, name, img: Image.Image, **kw) -> Path:
  p = tmp_path / name
  img.save(p, **kw)
  return p


def test_rgb_png_luma_exact(tmp_path):
  rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [100, 100, 100]]], np.uint8)
  p = _save(tmp_path, 'rgb.png', Image.fromarray(rgb))
  g = io_.load_grayscale(p)
  assert g.dtype == np.uint8 and g.shape == (2, 2)
  # ITU-R 601-2: 0.299 R + 0.587 G + 0.114 B, rounded.
  np.testing.assert_array_equal(g, [[76, 150], [29, 100]])


def test_rgba_composited_on_black(tmp_path):
  rgba = np.array([[[200, 200, 200, 255], [200, 200, 200, 128], [200, 200, 200, 0]]], np.uint8)
  p = _save(tmp_path, 'rgba.png', Image.fromarray(rgba, 'RGBA'))
  np.testing.assert_array_equal(io_.load_grayscale(p), [[200, 100, 0]])  # 200*128/255=100.4


def test_la_composited_on_black(tmp_path):
  la = Image.new('LA', (2, 1))
  la.putpixel((0, 0), (90, 255))
  la.putpixel((1, 0), (90, 51))  # 90 * 51 / 255 = 18
  p = _save(tmp_path, 'la.png', la)
  np.testing.assert_array_equal(io_.load_grayscale(p), [[90, 18]])


def test_palette_png_and_gif(tmp_path):
  pal = Image.new('P', (3, 1))
  pal.putpalette([0, 0, 0, 255, 0, 0, 255, 255, 255] + [0] * (3 * 253))
  for x, idx in enumerate([0, 1, 2]):
    pal.putpixel((x, 0), idx)
  for name in ('pal.png', 'pal.gif'):
    p = _save(tmp_path, name, pal)
    np.testing.assert_array_equal(io_.load_grayscale(p), [[0, 76, 255]])


def test_16bit_png_scaled_by_bit_depth_not_clipped(tmp_path):
  a16 = np.array([[0, 65535, 32768, 1000]], np.uint16)
  p = _save(tmp_path, 'a16.png', Image.fromarray(a16))
  assert Image.open(p).mode.startswith('I')
  # v * 255 / 65535: 32768 -> 127.5019 -> 128; 1000 -> 3.89 -> 4.
  np.testing.assert_array_equal(io_.load_grayscale(p), [[0, 255, 128, 4]])
  # 12-bit data in a 16-bit container: scaled by 4095.
  a12 = np.array([[0, 4095, 2048, 1000]], np.uint16)
  p = _save(tmp_path, 'a12.png', Image.fromarray(a12))
  np.testing.assert_array_equal(io_.load_grayscale(p), [[0, 255, 128, 62]])  # 62.27


def test_float_and_1bit_images(tmp_path):
  f = np.array([[0.0, 0.5, 1.0]], np.float32)
  p = _save(tmp_path, 'f.tif', Image.fromarray(f))
  np.testing.assert_array_equal(io_.load_grayscale(p), [[0, 128, 255]])
  b = Image.new('1', (2, 1))
  b.putpixel((1, 0), 1)
  p = _save(tmp_path, 'b.png', b)
  np.testing.assert_array_equal(io_.load_grayscale(p), [[0, 255]])


@pytest.mark.parametrize('kind', ['truncated_jpeg', 'truncated_png', 'zero_byte', 'text_png',
                                  'missing'])
def test_bad_files_raise_dataerror_naming_file(tmp_path, kind):
  arr = (np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)
  if kind == 'truncated_jpeg':
    src = F.write_image(tmp_path / 'ok.jpg', arr, fmt='JPEG')
    p = F.truncated_copy(src, tmp_path / 'bad.jpg')
  elif kind == 'truncated_png':
    src = F.write_png(tmp_path / 'ok.png', arr)
    p = F.truncated_copy(src, tmp_path / 'bad.png')
  elif kind == 'zero_byte':
    p = F.write_junk(tmp_path / 'bad.png', b'')
  elif kind == 'text_png':
    p = F.write_junk(tmp_path / 'bad.png', b'this is not an image\n')
  else:
    p = tmp_path / 'bad.png'
  with pytest.raises(DataError) as e:
    io_.load_grayscale(p)
  assert str(p) in str(e.value) and e.value.path == p
  with pytest.raises(DataError):
    io_.load_mask(p)


def test_load_mask_binarisation(tmp_path):
  aa = np.array([[0, 127, 128, 255]], np.uint8)  # anti-aliased 8-bit
  np.testing.assert_array_equal(io_.load_mask(F.write_png(tmp_path / 'a.png', aa)), [[0, 0, 1, 1]])
  b01 = np.array([[0, 1, 1, 0]], np.uint8)  # already binary {0, 1}
  np.testing.assert_array_equal(io_.load_mask(F.write_png(tmp_path / 'b.png', b01)), [[0, 1, 1, 0]])
  gif = np.array([[0, 255, 0, 255]], np.uint8)  # SCR style 0/255 GIF
  m = io_.load_mask(F.write_gif(tmp_path / 'c.gif', gif))
  assert m.dtype == np.uint8
  np.testing.assert_array_equal(m, [[0, 1, 0, 1]])
  m16 = np.array([[0, 65535]], np.uint16)
  np.testing.assert_array_equal(io_.load_mask(F.write_png(tmp_path / 'd.png', m16)), [[0, 1]])


def test_load_mask_alpha_is_not_composited(tmp_path):
  # Mask drawn as transparency: constant white colour, alpha 0/255 -> alpha is the mask.
  rgba = np.zeros((1, 3, 4), np.uint8)
  rgba[..., :3] = 255
  rgba[0, :, 3] = [0, 255, 255]
  p = _save(tmp_path, 'alpha.png', Image.fromarray(rgba, 'RGBA'))
  np.testing.assert_array_equal(io_.load_mask(p), [[0, 1, 1]])
  # GIF whose transparent palette entry is the white foreground: colours win.
  pal = Image.new('P', (3, 1))
  pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * (3 * 254))
  pal.putpixel((1, 0), 1)
  pal.putpixel((2, 0), 1)
  p = _save(tmp_path, 'tr.gif', pal, transparency=1)
  assert 'transparency' in Image.open(p).info
  np.testing.assert_array_equal(io_.load_mask(p), [[0, 1, 1]])
  assert io_.load_grayscale(p).tolist() == [[0, 0, 0]]  # images ARE composited


def test_jsrt_img_real_size_inverted(tmp_path):
  raw = np.zeros(io_.JSRT_SHAPE, np.uint16)
  raw[0, 0], raw[0, 1], raw[0, 2] = 0, 4095, 2048
  raw[1000:1100, 1000:1100] = 3500  # a "lung": high raw value -> dark
  p = F.write_jsrt_img(tmp_path / 'JPCLN001.IMG', raw)
  assert p.stat().st_size == 2048 * 2048 * 2
  g = io_.load_jsrt_img(p)
  assert g.shape == (2048, 2048) and g.dtype == np.uint8
  assert (g[0, 0], g[0, 1], g[0, 2]) == (255, 0, 127)  # (4095-2048)*255/4095 = 127.47
  assert g[1050, 1050] == F.jsrt_gray(3500) == 37
  # load_grayscale dispatches .IMG to the JSRT reader.
  np.testing.assert_array_equal(io_.load_grayscale(p)[:2, :3], g[:2, :3])


def test_jsrt_img_bad_size(tmp_path):
  p = F.write_jsrt_img(tmp_path / 'x.IMG', np.zeros((16, 16)))
  with pytest.raises(DataError, match='x.IMG'):
    io_.load_jsrt_img(p)  # default 2048x2048
  assert io_.load_jsrt_img(p, 16).shape == (16, 16)
  assert io_.load_jsrt_img(p, None).shape == (16, 16)  # inferred square
  p2 = F.write_junk(tmp_path / 'y.IMG', b'\x00' * 6)
  with pytest.raises(DataError, match='y.IMG'):
    io_.load_jsrt_img(p2, None)


def test_resize_image_and_mask_analytic():
  img = np.full((64, 48), 77, np.uint8)
  out = io_.resize_image(img, 32)
  assert out.shape == (32, 32) and out.dtype == np.uint8 and np.all(out == 77)
  assert io_.resize_image(img, (10, 20)).shape == (10, 20)
  # Downsampling an even-aligned rectangle by 2 gives exactly the half rectangle.
  big = F.union01(64)
  np.testing.assert_array_equal(io_.resize_mask(big, 32), F.union01(32))
  # Upsampling by 2 gives exactly the double rectangle; output stays binary.
  up = io_.resize_mask(F.union01(16) * 255, 32)
  assert set(np.unique(up)) <= {0, 1}
  np.testing.assert_array_equal(up, F.union01(32))
  # Antialiasing: a 1-px line survives a x2 reduction as bilinear weight 0.5 area.
  line = np.zeros((8, 8), np.uint8)
  line[:, 3] = 255
  assert io_.resize_image(line, (8, 4)).max() > 0


def test_is_ignorable():
  for n in ['.DS_Store', 'Thumbs.db', 'desktop.ini', '.hidden.png', '._IM-1.jpeg',
            '__MACOSX/a/b.png']:
    assert io_.is_ignorable(Path('x') / n), n
  for n in ['IM-0001.jpeg', 'a.png', 'mask.gif']:
    assert not io_.is_ignorable(Path('x') / n), n


# ==========================================================================
# Splits, summary
# ==========================================================================


def test_seeded_split_paper_counts_and_determinism():
  keys = [f'k{i:03d}' for i in range(247)]
  s = B.seeded_split(keys, 13 / 247, 123 / 247, seed=0)
  assert {k: len(v) for k, v in s.items()} == {'train': 111, 'validation': 13, 'test': 123}
  assert s == B.seeded_split(list(reversed(keys)), 13 / 247, 123 / 247, seed=0)
  assert s != B.seeded_split(keys, 13 / 247, 123 / 247, seed=1)
  assert sorted(sum(s.values(), [])) == keys
  m = B.seeded_split(keys[:138], 10 / 138, 35 / 138, seed=3)
  assert [len(m[k]) for k in ('train', 'validation', 'test')] == [93, 10, 35]
  # Stratified: each class keeps its proportion.
  labels = [0] * 100 + [1] * 300
  st = B.seeded_split([f'{i}' for i in range(400)], 0.1, 0.0, seed=0, strata=labels)
  val_labels = [labels[int(k)] for k in st['validation']]
  assert val_labels.count(0) == 10 and val_labels.count(1) == 30


def test_skip_summary():
  s = L.SkipSummary()
  for i in range(7):
    s.add('ignored_system_file', f'/x/{i}')
  s.add('image_without_mask', '/y')
  assert s.total == 8 and s['ignored_system_file'] == 7 and s['nothing'] == 0
  assert len(s.as_dict()['examples']['ignored_system_file']) == 5
  assert 'image_without_mask: 1' in str(s)


# ==========================================================================
# Layout readers (no pixels)
# ==========================================================================


def test_classification_reader_flat_and_split(tmp_path):
  F.make_generic_cls(tmp_path / 'flat')
  recs, s = L.read_classification_folder(tmp_path / 'flat')
  assert [r.label for r in recs].count(0) == 3 and [r.label for r in recs].count(1) == 4
  assert all(r.split is None for r in recs)
  assert s['ignored_system_file'] == 2 and s['outside_class_folder'] == 1  # labels.csv
  F.make_generic_cls(tmp_path / 'split', split_layout=True)
  recs, s = L.read_classification_folder(tmp_path / 'split')
  assert {r.split for r in recs} == {'train', 'validation', 'test'} and len(recs) == 21
  assert s['ignored_system_file'] == 6


def test_classification_reader_unknown_and_empty_class(tmp_path):
  F.make_generic_cls(tmp_path)
  F.write_png(tmp_path / 'COVID' / 'c.png', np.zeros((4, 4), np.uint8))
  with pytest.raises(DataError) as e:
    L.read_classification_folder(tmp_path)
  assert str(tmp_path / 'COVID') in str(e.value) and 'unknown class' in str(e.value)
  recs, s = L.read_classification_folder(tmp_path, allow_unknown=True)
  assert len(recs) == 7 and s['unknown_class'] == 1
  recs, _ = L.read_classification_folder(tmp_path, ['normal', 'pneumonia', 'covid'])
  assert sorted({r.label for r in recs}) == [0, 1, 2]
  (tmp_path / 'COVID' / 'c.png').unlink()
  F.write_junk(tmp_path / 'COVID' / '.DS_Store')
  with pytest.raises(DataError) as e:
    L.read_classification_folder(tmp_path, ['normal', 'pneumonia', 'covid'])
  assert str(tmp_path / 'COVID') in str(e.value) and 'no images' in str(e.value)


def test_segmentation_reader_pairs_and_counts(tmp_path):
  F.make_generic_seg(tmp_path)
  recs, s = L.read_segmentation_folder(tmp_path)
  assert [r.key for r in recs] == ['images/a.png', 'images/b.jpg', 'images/c.png', 'images/d.png']
  assert [r.mask_paths[0].name for r in recs] == ['a_mask.png', 'b.png', 'c_mask.png', 'd.png']
  assert s['image_without_mask'] == 1 and s['mask_without_image'] == 1
  assert s['ignored_system_file'] == 1
  with pytest.raises(DataError, match='e.png'):
    L.read_segmentation_folder(tmp_path, strict=True)


def test_kermany_reader_finds_nested_root(tmp_path):
  F.make_kermany(tmp_path)
  for root in (tmp_path, tmp_path / 'chest_xray'):
    recs, s = L.read_kermany(root)
    assert len(recs) == 13
    assert recs[0].key.split('/')[0] in ('test', 'train', 'val')
  assert s['ignored_system_file'] == 2


def test_jsrt_reader(tmp_path):
  F.make_jsrt(tmp_path)
  recs, s = L.read_jsrt(tmp_path)
  assert [r.key for r in recs] == sorted(F.JSRT_RAW)
  assert all(len(r.mask_paths) == 2 and r.split is None for r in recs)
  assert {r.mask_paths[0].parent.name for r in recs} == {'left lung'}
  assert s['image_without_mask'] == 1 and s['unused_structure'] == 6
  assert s['not_an_image'] == 1 and s['ignored_system_file'] == 1
  # SCR given as a separate root.
  recs2, _ = L.read_jsrt(tmp_path / 'All247images', scr_root=tmp_path / 'scr')
  assert [r.key for r in recs2] == [r.key for r in recs]


def test_nih_reader(tmp_path):
  F.make_nih(tmp_path)
  recs, s = L.read_nih_pneumonia(tmp_path)
  assert {r.key: r.label for r in recs} == {
      '00000001_000.png': 0, '00000002_000.png': 0, '00000003_000.png': 0,
      '00000004_000.png': 1, '00000005_001.png': 1}
  assert s['other_finding'] == 1 and s['missing_image'] == 1 and s['not_in_csv'] == 1


# ==========================================================================
# TFDS builders: each layout built at size 32 and read back
# ==========================================================================


def test_build_kermany(tmp_path):
  F.make_kermany(tmp_path / 'manual')
  b = B.build_dataset('kermany', tmp_path / 'manual', tmp_path / 'tfds', 32)
  assert b.builder_config.name == '32px'
  sizes = {k: v.num_examples for k, v in b.info.splits.items()}
  assert sizes == {'train': 7, 'validation': 2, 'test': 4}
  ex = _read_all(b, 'train')
  assert b.info.features['label'].names == ['NORMAL', 'PNEUMONIA']
  for key, e in ex.items():
    assert e['image'].shape == (S, S, 1) and e['image'].dtype == np.uint8
    cls = key.split('/')[1]
    i = int(key.split('/')[2].split('-')[1] if cls == 'NORMAL' else key.split('_')[-1][0])
    expected = 40 + 10 * i if cls == 'NORMAL' else 160 + 10 * i
    assert e['label'] == (cls == 'PNEUMONIA')
    assert abs(int(e['image'].mean()) - expected) <= 2, key  # JPEG
  sk = b.info.metadata['skip_summary']
  assert sk['counts'] == {'ignored_system_file': 2}


def test_build_jsrt_split_and_union(tmp_path):
  F.make_jsrt(tmp_path / 'manual')
  b = B.build_dataset('jsrt', tmp_path / 'manual', tmp_path / 'tfds', 32, jsrt_shape=S)
  sizes = {k: v.num_examples for k, v in b.info.splits.items()}
  # 6 images with masks, proportions 111/13/123: test round(2.99)=3, val>=1.
  assert sizes == {'train': 2, 'validation': 1, 'test': 3}
  allex = {}
  for split in sizes:
    allex.update(_read_all(b, split))
  assert sorted(allex) == sorted(F.JSRT_RAW)
  for key, e in allex.items():
    assert np.all(e['image'][..., 0] == F.jsrt_gray(F.JSRT_RAW[key])), key
    # left + right united; SCR masks at half resolution are upsampled exactly.
    np.testing.assert_array_equal(e['mask'][..., 0], F.union01(S))
  # Same seed -> same split, reproducible across builds.
  b2 = B.build_dataset('jsrt', tmp_path / 'manual', tmp_path / 'tfds2', 32, jsrt_shape=S)
  assert sorted(_read_all(b2, 'test')) == sorted(_read_all(b, 'test'))
  assert b.info.metadata['skip_summary']['counts']['image_without_mask'] == 1


def test_build_montgomery(tmp_path):
  grays = F.make_montgomery(tmp_path / 'manual')
  b = B.build_dataset('montgomery', tmp_path / 'manual', tmp_path / 'tfds', 32)
  sizes = {k: v.num_examples for k, v in b.info.splits.items()}
  assert sum(sizes.values()) == 4 and set(sizes) == {'train', 'validation', 'test'}
  for split in sizes:
    for key, e in _read_all(b, split).items():
      assert np.all(e['image'] == grays[key])
      assert e['abnormal'] == int(key[-1])
      np.testing.assert_array_equal(e['mask'][..., 0], F.union01(S))
  counts = b.info.metadata['skip_summary']['counts']
  assert counts['image_without_mask'] == 1 and counts['ignored_system_file'] == 1


def test_build_shenzhen_rgb_png(tmp_path):
  grays = F.make_shenzhen(tmp_path / 'manual')
  b = B.build_dataset('shenzhen', tmp_path / 'manual', tmp_path / 'tfds', 32)
  sizes = {k: v.num_examples for k, v in b.info.splits.items()}
  assert sizes == {'train': 3, 'validation': 1, 'test': 1}
  for split in sizes:
    for key, e in _read_all(b, split).items():
      assert np.all(e['image'] == grays[key])  # R=G=B keeps the value exactly
      np.testing.assert_array_equal(e['mask'][..., 0], F.union01(S))
  assert b.info.metadata['skip_summary']['counts']['image_without_mask'] == 1


def test_build_nih_test_only_with_subsampling(tmp_path):
  F.make_nih(tmp_path / 'manual')
  b = B.build_dataset('nih_pneumonia', tmp_path / 'manual', tmp_path / 'tfds', 32, max_normal=2)
  assert list(b.info.splits) == ['test']
  ex = _read_all(b, 'test')
  labels = sorted(int(e['label']) for e in ex.values())
  assert labels == [0, 0, 1, 1]
  counts = b.info.metadata['skip_summary']['counts']
  assert counts['normal_subsampled'] == 1 and counts['other_finding'] == 1
  assert counts['missing_image'] == 1 and counts['not_in_csv'] == 1


def test_build_generic_classification_and_grain(tmp_path):
  F.make_generic_cls(tmp_path / 'manual')
  b = B.build_dataset('generic_classification_folder', tmp_path / 'manual',
                      tmp_path / 'tfds', 32, val_fraction=0.25)
  sizes = {k: v.num_examples for k, v in b.info.splits.items()}
  assert sizes == {'train': 5, 'validation': 2}  # stratified: 1 of 3 NORMAL, 1 of 4 PNEU
  val = _read_all(b, 'validation')
  assert sorted(int(e['label']) for e in val.values()) == [0, 1]
  import grain
  ds = grain.MapDataset.source(b.as_data_source(split='train')).seed(0).shuffle()
  labels = sorted(int(ds[i]['label']) for i in range(len(ds)))
  assert labels == [0, 0, 1, 1, 1]
  # Reading back later through make_builder with the same options.
  b2 = B.make_builder('generic_classification_folder', tmp_path / 'tfds', 32, val_fraction=0.25)
  assert b2.builder_config.name == b.builder_config.name
  assert len(b2.as_data_source(split='train')) == 5
  assert b2.info.metadata['skip_summary']['total'] == 3
  assert 'tensorflow' not in sys.modules


def test_build_generic_classification_split_folders(tmp_path):
  F.make_generic_cls(tmp_path / 'manual', split_layout=True)
  b = B.build_dataset('generic_classification_folder', tmp_path / 'manual',
                      tmp_path / 'tfds', 32)
  assert {k: v.num_examples for k, v in b.info.splits.items()} == {
      'train': 7, 'validation': 7, 'test': 7}


def test_build_generic_segmentation(tmp_path):
  F.make_generic_seg(tmp_path / 'manual', side=64)  # 64 px files, built at 32: resized
  b = B.build_dataset('generic_segmentation_folder', tmp_path / 'manual',
                      tmp_path / 'tfds', 32, val_fraction=0.25)
  sizes = {k: v.num_examples for k, v in b.info.splits.items()}
  assert sizes == {'train': 3, 'validation': 1}
  for split in sizes:
    for key, e in _read_all(b, split).items():
      assert e['image'].shape == e['mask'].shape == (S, S, 1)
      np.testing.assert_array_equal(e['mask'][..., 0], F.union01(S))
  counts = b.info.metadata['skip_summary']['counts']
  assert counts['image_without_mask'] == 1 and counts['mask_without_image'] == 1


def test_build_any_size_and_reuse(tmp_path):
  F.make_generic_seg(tmp_path / 'manual')
  b = B.build_dataset('generic_segmentation_folder', tmp_path / 'manual', tmp_path / 'tfds', 16)
  assert b.builder_config.name == '16px'
  e = b.as_data_source(split='train')[0]
  assert e['image'].shape == (16, 16, 1)
  np.testing.assert_array_equal(e['mask'][..., 0], F.union01(16))
  t = time.time()
  b2 = B.build_dataset('generic_segmentation_folder', tmp_path / 'manual', tmp_path / 'tfds', 16)
  assert len(b2.as_data_source(split='train')) == len(b.as_data_source(split='train'))
  assert time.time() - t < 5
  with pytest.raises(TypeError, match='max_normal'):
    B.make_builder('generic_segmentation_folder', tmp_path / 'tfds', 16, max_normal=3)


# ==========================================================================
# Failed builds leave nothing behind
# ==========================================================================


def _fails_clean(tmp_path, name, manual, match, **kw):
  data_dir = tmp_path / 'tfds'
  with pytest.raises(DataError) as e:
    B.build_dataset(name, manual, data_dir, 32, **kw)
  assert match in str(e.value), str(e.value)
  _assert_empty_dir(data_dir)
  return e.value


@pytest.mark.parametrize('bad', ['truncated', 'zero_byte', 'text_png'])
def test_build_fails_on_bad_image_and_cleans_up(tmp_path, bad):
  manual = tmp_path / 'manual'
  F.make_generic_cls(manual)
  if bad == 'truncated':
    arr = (np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)
    src = F.write_image(tmp_path / 'ok.jpg', arr, fmt='JPEG')
    p = F.truncated_copy(src, manual / 'pneumonia' / 'p9.jpg')
  elif bad == 'zero_byte':
    p = F.write_junk(manual / 'NORMAL' / 'n9.png', b'')
  else:
    p = F.write_junk(manual / 'NORMAL' / 'n9.png', b'hello, not a png')
  _fails_clean(tmp_path, 'generic_classification_folder', manual, str(p))


def test_build_fails_when_data_dir_exists_leaves_it_as_it_was(tmp_path):
  manual = tmp_path / 'manual'
  F.make_generic_cls(manual)
  F.write_junk(manual / 'NORMAL' / 'n9.png', b'')
  data_dir = tmp_path / 'tfds'
  data_dir.mkdir()
  (data_dir / 'keep.txt').write_text('x')
  with pytest.raises(DataError):
    B.build_dataset('generic_classification_folder', manual, data_dir, 32)
  assert sorted(p.name for p in data_dir.rglob('*')) == ['keep.txt']


def test_failed_second_config_keeps_first_dataset(tmp_path):
  manual = tmp_path / 'manual'
  F.make_generic_seg(manual)
  data_dir = tmp_path / 'tfds'
  B.build_dataset('generic_segmentation_folder', manual, data_dir, 32)
  before = sorted(p.relative_to(data_dir) for p in data_dir.rglob('*'))
  with pytest.raises(DataError, match='e.png'):
    B.build_dataset('generic_segmentation_folder', manual, data_dir, 16, strict=True)
  assert sorted(p.relative_to(data_dir) for p in data_dir.rglob('*')) == before
  b = B.make_builder('generic_segmentation_folder', data_dir, 32)
  assert len(b.as_data_source(split='train')) == 3


def test_build_fails_on_mask_size_mismatch(tmp_path):
  manual = tmp_path / 'manual'
  F.make_generic_seg(manual)
  bad = F.write_png(manual / 'masks' / 'd.png', F.union01(16) * 255)  # image is 32x32
  err = _fails_clean(tmp_path, 'generic_segmentation_folder', manual, str(bad))
  assert 'mask is 16x16' in str(err)
  # With an explicit policy it is accepted.
  b = B.build_dataset('generic_segmentation_folder', manual, tmp_path / 'ok', 32,
                      mask_size_policy='resize')
  assert sum(v.num_examples for v in b.info.splits.values()) == 4


def test_build_fails_on_unknown_and_empty_class_folder(tmp_path):
  manual = tmp_path / 'manual'
  F.make_generic_cls(manual)
  F.write_png(manual / 'Covid' / 'c.png', np.zeros((S, S), np.uint8))
  _fails_clean(tmp_path, 'generic_classification_folder', manual, str(manual / 'Covid'))
  b = B.build_dataset('generic_classification_folder', manual, tmp_path / 'ok', 32,
                      allow_unknown=True, val_fraction=0.0)
  assert b.info.splits['train'].num_examples == 7
  assert b.info.metadata['skip_summary']['counts']['unknown_class'] == 1
  (manual / 'Covid' / 'c.png').unlink()
  _fails_clean(tmp_path, 'generic_classification_folder', manual, str(manual / 'Covid'),
               class_names=('normal', 'pneumonia', 'covid'))


def test_build_fails_on_missing_or_empty_manual_dir(tmp_path):
  with pytest.raises(DataError, match='nowhere'):
    B.build_dataset('kermany', tmp_path / 'nowhere', tmp_path / 'tfds', 32)
  (tmp_path / 'empty').mkdir()
  _fails_clean(tmp_path, 'kermany', tmp_path / 'empty', str(tmp_path / 'empty'))


def test_strict_segmentation_build(tmp_path):
  manual = tmp_path / 'manual'
  F.make_generic_seg(manual)
  _fails_clean(tmp_path, 'generic_segmentation_folder', manual, 'e.png', strict=True)


def test_cli(tmp_path, capsys):
  sys.path.insert(0, str(Path(__file__).parents[1] / 'scripts'))
  try:
    import build_dataset as cli
  finally:
    sys.path.pop(0)
  F.make_montgomery(tmp_path / 'manual')
  rc = cli.main(['montgomery', '--manual_dir', str(tmp_path / 'manual'), '--data_dir',
                 str(tmp_path / 'tfds'), '--size', '32', '--split_seed', '3'])
  out = capsys.readouterr().out
  assert rc == 0 and 'image_without_mask: 1' in out and 'train:' in out
  rc = cli.main(['montgomery', '--manual_dir', str(tmp_path / 'manual'), '--data_dir',
                 str(tmp_path / 'tfds'), '--size', '32', '--class_names', 'a,b'])
  assert rc == 2 and 'class_names' in capsys.readouterr().err


# ==========================================================================
# load_folder_arrays (no TFDS)
# ==========================================================================


def test_load_folder_arrays_fixtures(tmp_path):
  F.make_generic_seg(tmp_path / 'seg')
  a, s = B.load_folder_arrays(tmp_path / 'seg', 'segmentation', 32, return_summary=True)
  assert a['image'].shape == (4, 32, 32) and a['mask'].shape == (4, 32, 32)
  assert a['image'].dtype == a['mask'].dtype == np.uint8
  assert list(a['key']) == ['images/a.png', 'images/b.jpg', 'images/c.png', 'images/d.png']
  assert a['image'][0, 0, 0] == 60 and s['image_without_mask'] == 1
  np.testing.assert_array_equal(a['mask'][2], F.union01(32))
  F.make_generic_cls(tmp_path / 'cls', split_layout=True)
  c = B.load_folder_arrays(tmp_path / 'cls', 'classification', (16, 24))
  assert c['image'].shape == (21, 16, 24) and c['label'].tolist().count(1) == 12
  assert set(c['split']) == {'train', 'validation', 'test'}


# ==========================================================================
# Real data (../shared/data), skipped when absent
# ==========================================================================


def test_real_openist_segmentation_arrays():
  root = _real('lung_masks_openist')
  a = B.load_folder_arrays(root, 'segmentation', 64)
  assert a['image'].shape == (199, 64, 64) and a['mask'].shape == (199, 64, 64)
  assert set(np.unique(a['mask'])) == {0, 1}
  frac = a['mask'].reshape(199, -1).mean(1)
  assert frac.min() > 0.05 and frac.max() < 0.7  # every mask non-empty, plausible
  # Lungs are darker than the rest of the image.
  inside = (a['image'] * a['mask']).sum() / a['mask'].sum()
  outside = (a['image'] * (1 - a['mask'])).sum() / (1 - a['mask']).sum()
  assert inside < outside


def test_real_kermany_224_records():
  root = _real('kermany_pneumonia_224/train')
  recs, s = L.read_classification_folder(root)
  labels = [r.label for r in recs]
  assert labels.count(0) == 1341 and labels.count(1) == 3875 and s.total == 0
  a = B.load_records(recs[::500], 32, kind='classification')  # a few pixels only
  assert a['image'].shape == (len(recs[::500]), 32, 32)


def test_real_kermany_fullres_mixed_modes():
  root = _real('kermany_pneumonia_fullres')
  a, s = B.load_folder_arrays(root, 'classification', 64, return_summary=True)
  assert a['image'].shape == (100, 64, 64) and a['label'].tolist().count(0) == 50
  assert s['outside_class_folder'] == 1  # labels.csv
  import csv
  rows = list(csv.DictReader(open(root / 'labels.csv')))
  rgb = [r for r in rows if r['mode'] == 'RGB']
  assert rgb, 'expected some RGB files'
  for r in rgb[:2]:
    p = root / r['label'] / r['filename']
    g = io_.load_grayscale(p)
    assert g.shape == (int(r['height']), int(r['width']))
    np.testing.assert_array_equal(g, np.asarray(Image.open(p).convert('L')))


@pytest.mark.slow
def test_real_kermany_224_full_load_speed():
  root = _real('kermany_pneumonia_224/train')
  t = time.time()
  a = B.load_folder_arrays(root, 'classification', 128)
  dt = time.time() - t
  assert a['image'].shape == (5216, 128, 128) and dt < 60, dt


@pytest.mark.slow
def test_real_openist_tfds_build(tmp_path):
  root = _real('lung_masks_openist')
  b = B.build_dataset('generic_segmentation_folder', root, tmp_path / 'tfds', 64)
  sizes = {k: v.num_examples for k, v in b.info.splits.items()}
  assert sizes == {'train': 179, 'validation': 20}
  e = b.as_data_source(split='validation')[0]
  assert e['mask'].sum() > 0
