"""Tests for the procedural chest-X-ray generator (multimix_jax.synthetic)."""

import pickle

import numpy as np
import pytest
from scipy import ndimage

from multimix_jax.synthetic import SyntheticCXR, make_example


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_dtypes(size):
    for i in range(3):
        ex = make_example(i, seed=1, size=size)
        assert set(ex) == {"image", "mask", "label"}
        assert ex["image"].shape == (size, size) and ex["image"].dtype == np.uint8
        assert ex["mask"].shape == (size, size) and ex["mask"].dtype == np.uint8
        assert set(np.unique(ex["mask"])) <= {0, 1}
        assert 0 < ex["mask"].mean() < 0.5
        assert isinstance(ex["label"], int) and ex["label"] in (0, 1)
        assert ex["image"].std() > 10  # not a flat image


def test_deterministic_per_seed_and_index():
    a, b = make_example(7, seed=3), make_example(7, seed=3)
    for k in ("image", "mask"):
        np.testing.assert_array_equal(a[k], b[k])
    assert a["label"] == b["label"]
    other_index, other_seed = make_example(8, seed=3), make_example(7, seed=4)
    assert not np.array_equal(a["image"], other_index["image"])
    assert not np.array_equal(a["image"], other_seed["image"])
    assert not np.array_equal(a["mask"], other_index["mask"])


def test_global_numpy_state_untouched():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    make_example(0)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_mask_is_two_lungs_at_128():
    for i in range(40):
        mask = make_example(i, seed=0, size=128)["mask"]
        _, n = ndimage.label(mask)
        assert n == 2, f"example {i}: {n} connected components"
        # one lung on each side of the midline
        assert mask[:, :64].sum() > 0.2 * mask.sum() and mask[:, 64:].sum() > 0.2 * mask.sum()


def test_pneumonia_fraction_respected():
    labels = np.array([make_example(i, seed=5, size=32)["label"] for i in range(400)])
    assert 0.4 < labels.mean() < 0.6
    labels = np.array([make_example(i, seed=5, size=32, pneumonia_fraction=0.2)["label"]
                       for i in range(400)])
    assert 0.12 < labels.mean() < 0.28
    assert all(make_example(i, size=32, pneumonia_fraction=0.0)["label"] == 0 for i in range(20))
    assert all(make_example(i, size=32, pneumonia_fraction=1.0)["label"] == 1 for i in range(20))


def test_opacities_only_in_pneumonia_and_inside_lungs():
    n_pneu = 0
    for i in range(30):
        ex = make_example(i, seed=2, size=128)
        clean = make_example(i, seed=2, size=128, _with_opacities=False)
        np.testing.assert_array_equal(ex["mask"], clean["mask"])
        diff = np.abs(ex["image"].astype(np.float64) - clean["image"])
        if ex["label"] == 0:
            assert diff.sum() == 0  # NORMAL images have no opacities
            continue
        n_pneu += 1
        assert diff.max() >= 5, f"example {i}: opacities invisible"
        m = ex["mask"] > 0
        assert diff[m].sum() / diff.sum() > 0.9
        near = ndimage.binary_dilation(m, iterations=2)
        assert diff[near].sum() / diff.sum() > 0.99
    assert n_pneu >= 5


def test_source_len_getitem_offset_and_errors():
    src = SyntheticCXR(10, seed=4, size=32, offset=100)
    assert len(src) == 10
    ex = src[3]
    ref = make_example(103, seed=4, size=32)
    np.testing.assert_array_equal(ex["image"], ref["image"])
    np.testing.assert_array_equal(ex["mask"], ref["mask"])
    assert ex["label"] == ref["label"]
    np.testing.assert_array_equal(src[np.int64(3)]["image"], ref["image"])
    np.testing.assert_array_equal(src[-1]["image"], make_example(109, seed=4, size=32)["image"])
    with pytest.raises(IndexError):
        src[10]
    with pytest.raises(IndexError):
        src[-11]
    # disjoint splits from one seed: train [0, 10), val [10, 15)
    train, val = SyntheticCXR(10, seed=4, size=32), SyntheticCXR(5, seed=4, size=32, offset=10)
    np.testing.assert_array_equal(val[0]["image"], make_example(10, seed=4, size=32)["image"])
    assert not np.array_equal(train[0]["image"], val[0]["image"])
    assert "SyntheticCXR(" in repr(src) and "offset=100" in repr(src)
    clone = pickle.loads(pickle.dumps(src))  # Grain workers pickle the source
    np.testing.assert_array_equal(clone[3]["image"], ex["image"])
