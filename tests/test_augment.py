"""Tests for multimix_jax.augment (docs/multimix.md, Augmentations).

Images are deliberately non-square (H=48, W=64) so swapped axes are caught.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from multimix_jax import augment
from multimix_jax.augment import (
    RAND_AUGMENT_OPS,
    joint_geometric_augment,
    rand_augment,
    strong_augment,
    weak_augment,
)

H, W = 48, 64
ALL_OPS = [
    "AutoContrast", "Brightness", "Contrast", "Equalize", "Identity", "Posterize",
    "Rotate", "Sharpness", "ShearX", "ShearY", "Solarize", "TranslateX", "TranslateY",
]  # fmt: skip


def textured_image() -> np.ndarray:
    """Gradient + noise in 30..200: not full range, odd values, edges, non-flat histogram."""
    noise_rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:H, 0:W]
    base = 40 + 100 * (xx / (W - 1)) * (yy / (H - 1)) ** 2
    img = base + noise_rng.integers(-10, 11, size=(H, W))
    return np.clip(img, 30, 200).astype(np.uint8)


def apply_op(name: str, img: np.ndarray, v: int, seed: int = 0) -> np.ndarray:
    out = RAND_AUGMENT_OPS[name](Image.fromarray(img), v, np.random.default_rng(seed))
    assert out.mode == "L"
    return np.asarray(out)


# --------------------------------------------------------------------------- op pool


def test_pool_is_the_13_fixmatch_ops_without_cutout():
    assert list(RAND_AUGMENT_OPS) == ALL_OPS


@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize("v", [1, 9])
def test_each_op_keeps_shape_and_dtype(name, v):
    out = apply_op(name, textured_image(), v)
    assert out.shape == (H, W)
    assert out.dtype == np.uint8


@pytest.mark.parametrize("name", ALL_OPS)
def test_each_op_changes_image_at_v9_except_identity(name):
    img = textured_image()
    for seed in (0, 1):  # both signs of the signed ops
        out = apply_op(name, img, 9, seed)
        if name == "Identity":
            np.testing.assert_array_equal(out, img)
        else:
            assert not np.array_equal(out, img), name


def test_posterize_keeps_top_bits():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    # v=9: bits = 4 + int(3.6) = 7 -> low bit cleared; v=1: bits 4 -> multiples of 16.
    out9 = apply_op("Posterize", img, 9)
    assert np.all(out9 % 2 == 0)
    np.testing.assert_array_equal(out9, img & 0xFE)
    out1 = apply_op("Posterize", img, 1)
    np.testing.assert_array_equal(out1, img & 0xF0)


@pytest.mark.parametrize("v, threshold", [(9, 26), (5, 128), (1, 231)])
def test_solarize_inverts_pixels_at_or_above_threshold(v, threshold):
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = apply_op("Solarize", img, v)
    expected = np.where(img >= threshold, 255 - img, img).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)


def _shift_cols(img: np.ndarray, s: int) -> np.ndarray:
    """out[:, x] = img[:, x + s], 0 where x + s is outside."""
    out = np.zeros_like(img)
    if s >= 0:
        out[:, : img.shape[1] - s] = img[:, s:]
    else:
        out[:, -s:] = img[:, : img.shape[1] + s]
    return out


def test_translate_x_shifts_columns_by_expected_amount():
    img = np.tile((np.arange(W) * 3 + 10).astype(np.uint8), (H, 1))  # unique columns
    shift = 17  # int(0.3 * 9/10 * W) with W = 64
    signs = set()
    for seed in range(8):
        out = apply_op("TranslateX", img, 9, seed)
        if np.array_equal(out, _shift_cols(img, shift)):
            signs.add(+1)
            assert out[0, 0] == img[0, shift]  # column 17 moved to column 0
        elif np.array_equal(out, _shift_cols(img, -shift)):
            signs.add(-1)
            assert out[0, shift] == img[0, 0]  # column 0 moved to column 17
        else:
            pytest.fail("TranslateX output is not a pure 17-px horizontal shift")
    assert signs == {-1, +1}


def test_translate_y_uses_image_height():
    img = np.tile((np.arange(H) * 5 + 3).astype(np.uint8)[:, None], (1, W))
    shift = 12  # int(0.3 * 9/10 * H) with H = 48
    for seed in range(4):
        out = apply_op("TranslateY", img, 9, seed)
        ok = np.array_equal(out.T, _shift_cols(img.T, shift)) or np.array_equal(
            out.T, _shift_cols(img.T, -shift)
        )
        assert ok


def _principal_angle_deg(binary: np.ndarray) -> float:
    ys, xs = np.nonzero(binary)
    x, y = xs - xs.mean(), ys - ys.mean()
    return math.degrees(0.5 * math.atan2(2 * (x * y).mean(), (x * x).mean() - (y * y).mean()))


def test_rotate_turns_a_bar_by_27_degrees_both_ways():
    img = np.zeros((H, W), np.uint8)
    img[23:25, 6:58] = 255  # horizontal bar through the centre
    angles = [_principal_angle_deg(apply_op("Rotate", img, 9, s) > 0) for s in range(8)]
    for a in angles:
        assert abs(abs(a) - 27) < 1.5, angles  # int(30 * 9/10) = 27 degrees
    assert min(angles) < 0 < max(angles)


def test_shear_x_moves_rows_proportionally_to_y_about_top_left():
    img = np.zeros((H, W), np.uint8)
    img[:, 32] = 255  # vertical line
    for seed in range(4):
        out = apply_op("ShearX", img, 9, seed)
        assert np.argmax(out[0]) == 32  # top row fixed (shear about the top-left corner)
        cols = np.array([np.argmax(out[y]) for y in range(0, H, 4) if out[y].any()])
        rows = np.array([y for y in range(0, H, 4) if out[y].any()])
        slope = np.polyfit(rows, cols, 1)[0]
        assert abs(abs(slope) - 0.27) < 0.03  # 0.3 * 9/10


def test_brightness_scales_by_enhance_factor():
    img = textured_image()
    out = apply_op("Brightness", img, 9).astype(float)
    factor = 0.05 + 0.9 * 9 / 10  # 0.86
    assert np.abs(out - img * factor).max() <= 1.0


def test_autocontrast_stretches_low_contrast_image_to_full_range():
    img = np.linspace(100, 140, H * W).reshape(H, W).astype(np.uint8)
    out = apply_op("AutoContrast", img, 5)
    assert out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out.ravel().astype(int)) >= 0)  # order preserved


def _cdf_distance_from_uniform(img: np.ndarray) -> float:
    cdf = np.cumsum(np.bincount(img.ravel(), minlength=256)) / img.size
    return float(np.abs(cdf - (np.arange(256) + 1) / 256).max())


def test_equalize_flattens_the_histogram():
    # half the pixels spread over the 32 dark levels, half over the 224 others
    n = H * W // 2
    values = np.concatenate([np.arange(n) % 32, 32 + np.arange(n) % 224])
    img = values.astype(np.uint8).reshape(H, W)
    out = apply_op("Equalize", img, 5)
    assert _cdf_distance_from_uniform(img) > 0.3
    assert _cdf_distance_from_uniform(out) < 0.05


# --------------------------------------------------------------------------- rand_augment sampling


def test_rand_augment_samples_ops_with_replacement_strength_1_to_9_prob_half(monkeypatch):
    calls: list[tuple[str, int]] = []

    def recorder(name):
        def op(img, v, rng):
            calls.append((name, v))
            return img

        return op

    monkeypatch.setattr(augment, "RAND_AUGMENT_OPS", {n: recorder(n) for n in ALL_OPS})
    img = textured_image()
    n_trials, repeated = 2000, 0
    for seed in range(n_trials):
        before = len(calls)
        rand_augment(img, np.random.default_rng(seed), num_ops=2, magnitude=10)
        new = calls[before:]
        if len(new) == 2 and new[0][0] == new[1][0]:
            repeated += 1
    strengths = {v for _, v in calls}
    assert strengths == set(range(1, 10))
    assert abs(len(calls) / (2 * n_trials) - 0.5) < 0.04  # each op applied with p=0.5
    assert {n for n, _ in calls} == set(ALL_OPS)
    assert repeated > 0  # with replacement: the same op can be drawn twice


def test_rand_augment_num_ops_zero_is_identity():
    img = textured_image()
    np.testing.assert_array_equal(rand_augment(img, np.random.default_rng(0), num_ops=0), img)


# --------------------------------------------------------------------------- flip + crop


def test_weak_augment_is_a_flip_and_reflect_pad_crop():
    img = np.random.default_rng(7).integers(0, 256, (12, 16), dtype=np.uint8)
    pad = 3
    candidates = {}
    for flipped in (False, True):
        padded = np.pad(img[:, ::-1] if flipped else img, pad, mode="reflect")
        for top in range(2 * pad + 1):
            for left in range(2 * pad + 1):
                candidates[padded[top : top + 12, left : left + 16].tobytes()] = (
                    flipped, top, left,
                )  # fmt: skip
    seen = set()
    for seed in range(60):
        out = weak_augment(img, np.random.default_rng(seed), pad=pad)
        assert out.shape == img.shape and out.dtype == np.uint8
        key = out.tobytes()
        assert key in candidates, "output is not a flipped/unflipped reflect-pad crop"
        seen.add(candidates[key])
    assert {f for f, _, _ in seen} == {False, True}
    assert {t for _, t, _ in seen} == set(range(2 * pad + 1))


def test_weak_augment_pad_zero_only_flips():
    img = textured_image()
    outs = [weak_augment(img, np.random.default_rng(s), pad=0) for s in range(10)]
    for out in outs:
        assert np.array_equal(out, img) or np.array_equal(out, img[:, ::-1])
    assert any(np.array_equal(o, img) for o in outs)
    assert any(np.array_equal(o, img[:, ::-1]) for o in outs)


def test_strong_augment_keeps_shape_and_sometimes_changes_intensities():
    img = textured_image()
    changed_values = 0
    for seed in range(20):
        out = strong_augment(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        # flip + reflect-pad crop never creates new grey values; RandAugment usually does
        changed_values += not set(np.unique(out)) <= set(np.unique(img))
    assert changed_values > 0


# --------------------------------------------------------------------------- determinism


def _mask() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[8:30, 10:25] = 1
    yy, xx = np.mgrid[0:H, 0:W]
    m[(yy - 30) ** 2 + (xx - 45) ** 2 < 81] = 1
    return m


@pytest.mark.parametrize(
    "fn",
    [
        lambda rng: weak_augment(textured_image(), rng),
        lambda rng: strong_augment(textured_image(), rng),
        lambda rng: rand_augment(textured_image(), rng),
        lambda rng: np.stack(joint_geometric_augment(textured_image(), _mask(), rng)),
    ],
    ids=["weak", "strong", "rand_augment", "joint"],
)
def test_same_seed_same_output_different_seed_different_output(fn):
    a = fn(np.random.default_rng(42))
    b = fn(np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    others = [fn(np.random.default_rng(s)) for s in range(5)]
    assert any(not np.array_equal(a, o) for o in others)
    assert not np.array_equal(others[0], others[1])


def test_no_global_random_state_is_used():
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    rng = np.random.default_rng(0)
    strong_augment(textured_image(), rng)
    joint_geometric_augment(textured_image(), _mask(), rng)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


# --------------------------------------------------------------------------- joint augment


def test_joint_augment_without_rotation_keeps_image_and_mask_exactly_aligned():
    mask = _mask()
    img = 255 * mask
    moved = 0
    for seed in range(10):
        out_img, out_mask = joint_geometric_augment(
            img, mask, np.random.default_rng(seed), max_rotate=0
        )
        assert out_mask.dtype == np.uint8 and out_mask.shape == mask.shape
        np.testing.assert_array_equal(out_img, 255 * out_mask)
        moved += not np.array_equal(out_mask, mask)
    assert moved > 0


def test_joint_augment_with_rotation_keeps_mask_binary_and_aligned():
    mask = _mask()
    img = 255 * mask
    moved = []
    for seed in range(10):
        out_img, out_mask = joint_geometric_augment(
            img, mask, np.random.default_rng(seed), pad=4, max_rotate=10
        )
        assert out_img.shape == out_mask.shape == mask.shape
        assert set(np.unique(out_mask)) <= {0, 1}
        # image is resampled bilinearly, the mask by nearest: they agree except at a
        # few boundary pixels
        assert np.mean((out_img >= 128) != (out_mask == 1)) < 0.02
        assert abs(int(out_mask.sum()) - int(mask.sum())) < 0.1 * mask.sum()
        moved.append(np.mean(out_mask != mask))
    # the geometry moved the mask far more than the image/mask disagreement allowed above
    assert max(moved) > 0.05


def test_joint_augment_rotation_actually_rotates():
    img = np.zeros((H, W), np.uint8)
    img[23:25, 6:58] = 255
    mask = (img > 0).astype(np.uint8)
    angles = []
    for seed in range(10):
        out_img, out_mask = joint_geometric_augment(
            img, mask, np.random.default_rng(seed), pad=0, max_rotate=10, flip_prob=0.0
        )
        a_img = _principal_angle_deg(out_img >= 128)
        a_mask = _principal_angle_deg(out_mask == 1)
        assert abs(a_img - a_mask) < 1.0
        assert abs(a_mask) <= 10.5
        angles.append(a_mask)
    assert max(abs(a) for a in angles) > 2


# --------------------------------------------------------------------------- bad input


BAD_IMAGES = [
    np.zeros((8, 8), np.float32),
    np.zeros((8, 8), np.int64),
    np.zeros((8, 8, 1), np.uint8),
    np.zeros((8,), np.uint8),
    [[0, 1], [2, 3]],
]


@pytest.mark.parametrize("bad", BAD_IMAGES, ids=["float32", "int64", "3d", "1d", "list"])
@pytest.mark.parametrize(
    "fn",
    [
        weak_augment,
        strong_augment,
        rand_augment,
        lambda x, rng: joint_geometric_augment(x, np.zeros((8, 8), np.uint8), rng),
        lambda x, rng: joint_geometric_augment(np.zeros((8, 8), np.uint8), x, rng),
    ],
    ids=["weak", "strong", "rand_augment", "joint_image", "joint_mask"],
)
def test_bad_input_raises_value_error(fn, bad):
    with pytest.raises(ValueError):
        fn(bad, np.random.default_rng(0))


def test_bad_mask_and_parameters_raise_value_error():
    img = np.zeros((8, 8), np.uint8)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="binary"):
        joint_geometric_augment(img, np.full((8, 8), 255, np.uint8), rng)
    with pytest.raises(ValueError, match="shape"):
        joint_geometric_augment(img, np.zeros((8, 9), np.uint8), rng)
    with pytest.raises(ValueError, match="magnitude"):
        rand_augment(img, rng, magnitude=1)
    with pytest.raises(ValueError, match="pad"):
        weak_augment(img, rng, pad=-1)


def test_global_random_module_is_rejected_as_rng():
    with pytest.raises(TypeError):
        weak_augment(np.zeros((8, 8), np.uint8), np.random)  # type: ignore[arg-type]


def test_a_zoom_out_extends_a_border_touching_mask_as_it_extends_the_film():
    image = np.full((32, 32), 200, np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    image[:, :10], mask[:, :10] = 40, 1  # a dark lung touching the left border
    out, out_mask = augment.rotate_zoom_shift(image, mask, 0.0, 0.8, 1.0)
    assert np.all(out[:, 0] == 40)  # the film's edge is replicated ...
    assert np.all(out_mask[:, 0] == 1)  # ... and so is the mask's: lung-dark pixels stay lung
    assert np.all(out_mask[out == 200] == 0) and np.all(out_mask[out == 40] == 1)
    _, jittered = augment.geometric_jitter(image, mask, np.random.default_rng(0), max_zoom=0.3)
    assert set(np.unique(jittered)) <= {0, 1}
