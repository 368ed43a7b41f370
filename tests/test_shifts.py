"""Shifted validation sets and the recipe's augmentations (docs/multimix.md, Shifted
validation; Recipe for unseen films)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import ndimage

from multimix_jax import augment, input_pipeline, names, shifts, sources, steps
from multimix_jax.config_base import base_config
from multimix_jax.models import build_model, init_params
from tests.conftest import tiny_config

S = 48


def _lung_mask(side: int = S) -> np.ndarray:
    mask = np.zeros((side, side), np.uint8)
    mask[8:40, 6:20] = 1
    mask[8:40, 28:42] = 1
    return mask


def _film(seed: int, side: int = S) -> np.ndarray:
    """Dark lungs on a bright body, with some texture."""
    rng = np.random.default_rng(seed)
    film = np.full((side, side), 200.0) - 140.0 * _lung_mask(side) + rng.normal(0, 5, (side, side))
    return np.clip(film, 0, 255).astype(np.uint8)


def _val_sets(n_cls: int = 12):
    labels = np.array([0] * 3 + [1] * (n_cls - 3), np.int32)
    cls = sources.ArraySource({"image": np.stack([_film(i) for i in range(n_cls)]),
                                      "label": labels})
    seg = sources.ArraySource({"image": np.stack([_film(100 + i) for i in range(4)]),
                                      "mask": np.stack([_lung_mask()] * 4)})
    return {"val_cls": ("classification", cls), "val_seg": ("segmentation", seg)}


def test_shifted_sets_are_deterministic_balanced_and_change_the_films():
    sets = shifts.shifted_sources(_val_sets(), seed=3)
    assert set(sets) == set(names.SHIFTED_SETS)
    cls = sets["val_cls_shifted"][1]
    labels = [cls[i]["label"] for i in range(len(cls))]
    assert len(cls) == 6 and labels.count(0) == labels.count(1) == 3  # 50/50 prior
    again = shifts.shifted_sources(_val_sets(), seed=3)
    for name in names.SHIFTED_SETS:
        a, b = sets[name][1], again[name][1]
        for i in range(len(a)):
            assert a[i]["image"].dtype == np.uint8 and a[i]["image"].shape == (S, S)
            np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
    other = shifts.shifted_sources(_val_sets(), seed=4)["val_seg_shifted"][1]
    assert any(not np.array_equal(other[i]["image"], sets["val_seg_shifted"][1][i]["image"])
               for i in range(4))
    source = _val_sets()["val_seg"][1]
    assert all(not np.array_equal(sets["val_seg_shifted"][1][i]["image"], source[i]["image"])
               for i in range(4))


def test_disease_keeps_the_true_mask_and_only_brightens_lung():
    film, mask = _film(0), _lung_mask()
    for seed in range(12):
        painted, name = shifts.disease_shift(film, mask, np.random.default_rng(seed))
        assert name in shifts.DISEASES
        diff = painted.astype(int) - film.astype(int)
        assert diff.min() >= 0  # opacities are brighter, never darker
        outside = ndimage_dilate(mask, 3) == 0
        assert np.abs(diff[outside]).max() == 0  # nothing painted outside the lungs
        assert diff[mask > 0].mean() > 5  # something painted inside
    sets = shifts.shifted_sources(_val_sets(), seed=0)
    disease = sets["val_seg_disease"][1]
    for i in range(len(disease)):
        np.testing.assert_array_equal(disease[i]["mask"], _lung_mask())


def test_severe_disease_hides_the_lung_border_and_the_mask_follows_the_geometry_only():
    """val_seg_disease_hard: the true mask moves with the film's geometry and nothing else;
    the border of the lungs, dark on the clean film, turns as bright as tissue somewhere."""
    film, mask = _film(0), _lung_mask()
    border_gain = []
    for seed in range(12):
        image, moved, found = shifts.severe_disease_shift(film, mask, np.random.default_rng(seed))
        _, geometry_only = shifts._severe_geometry(film, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(moved, geometry_only)
        assert found[0] in shifts.SEVERE and image.dtype == np.uint8 and image.shape == film.shape
        clean, _ = shifts._severe_geometry(film, mask, np.random.default_rng(seed))
        border = (moved > 0) & ~ndimage_erode(moved > 0)
        border_gain.append((image[border].astype(int) - clean[border].astype(int)).max())
    assert min(border_gain) > 60
    again = shifts.severe_disease_shift(film, mask, np.random.default_rng(5))
    np.testing.assert_array_equal(again[0], shifts.severe_disease_shift(
        film, mask, np.random.default_rng(5))[0])


def ndimage_erode(mask):
    from scipy import ndimage
    return ndimage.binary_erosion(mask)


def ndimage_dilate(mask, iterations):
    from scipy import ndimage
    return ndimage.binary_dilation(mask, iterations=iterations)


def test_geometric_shift_moves_image_and_mask_together():
    film, mask = _film(1), _lung_mask()
    image, moved = augment.rotate_zoom_shift(film, mask, 90.0, 1.0, 1.0)
    np.testing.assert_array_equal(moved, np.rot90(mask, 1))  # a quarter turn is exact
    np.testing.assert_array_equal(image, np.rot90(film, 1))
    _, stretched = augment.rotate_zoom_shift(film, mask, 0.0, 1.0, 1.5)
    cols = np.flatnonzero(stretched.any(0))
    assert cols.max() - cols.min() > np.ptp(np.flatnonzero(mask.any(0)))  # wider across


def test_balanced_oversample_repeats_the_rare_class():
    indices = np.array([3, 5, 7, 9, 11])
    out = sources.balanced_oversample(indices, [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(out, [3, 3, 3, 3, 5, 7, 9, 11])


def test_recipe_augmentations_keep_dtype_shape_and_binary_masks():
    config = base_config().augment
    config.seg_joint, config.acquisition, config.opacity_prob = True, True, 1.0
    config.occlusion_prob = 1.0
    element = {"image": _film(2), "mask": _lung_mask(), "label": 1}
    for stream in names.STREAMS:
        out = input_pipeline.StreamTransform(stream, S, config).random_map(
            dict(element), np.random.default_rng(0))
        for key, value in out.items():
            if key != "label":
                assert value.dtype == np.uint8 and value.shape == (S, S, 1)
        if "mask" in out:
            assert set(np.unique(out["mask"])) <= {0, 1}


def test_occluding_opacity_hides_the_lung_border_and_leaves_far_pixels():
    film, mask = _film(3), _lung_mask()
    grown = ndimage.binary_dilation(mask > 0, iterations=int(round(0.08 * S)) + 2)
    border = ndimage.binary_dilation(mask > 0, iterations=2) & ~(mask > 0)  # just outside
    hidden = []
    for seed in range(20):
        out = augment.occluding_opacity(film, mask, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out.shape == film.shape
        changed = out.astype(int) > film.astype(int) + 2
        hidden.append(changed[border].mean())
        far = ~grown & (out != film)  # past the grown lungs only the bright overlays draw
        assert (out[far] >= 200).all()
    assert max(hidden) > 0.3  # some draws spill over a good part of the lung edge
    assert min(hidden) < max(hidden)  # and they differ


@pytest.mark.parametrize("use_bridge", [True, False])
def test_flip_tta_is_invariant_to_flipping_the_input(use_bridge):
    config = tiny_config(image_size=32)
    config.model.use_bridge = use_bridge
    model = build_model(config.model)
    params = init_params(model, jax.random.PRNGKey(0), 32)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    out = steps.predict(params, images, model=model, flip_tta=True)
    flipped = steps.predict(params, images[:, :, ::-1], model=model, flip_tta=True)
    np.testing.assert_allclose(out["class_probs"], flipped["class_probs"], atol=1e-5)
    np.testing.assert_allclose(out["mask_probs"], np.asarray(flipped["mask_probs"])[:, :, ::-1],
                               atol=1e-5)
    plain = steps.predict(params, images, model=model)
    assert not np.allclose(plain["class_probs"], flipped["class_probs"], atol=1e-7)


def test_shifted_validation_selects_the_model_and_stores_the_pooled_threshold(tmp_path):
    """With eval.shifted_validation and eval.threshold='fitted' the training loop validates on
    the shifted copies too, scores with 'shifted_score', stores the threshold fitted on the
    pooled classification sets, and evaluate reports every set at it (flip TTA on)."""
    import json

    from multimix_jax import checkpointing, evaluate, train, validation
    from tests.conftest import tiny_train_config
    config = tiny_train_config(num_steps=2)
    config.data.cls.num_examples, config.data.val_cls = 60, 16
    config.eval.shifted_validation, config.eval.flip_tta = True, True
    config.eval.threshold = "fitted"
    config.train.best_metric = "shifted_score"
    out = train.train_and_evaluate(config, tmp_path)
    results = out["best"]["results"]
    assert set(names.SHIFTED_SETS) <= set(results)
    reader = checkpointing.Checkpointer(tmp_path, read_only=True)
    info = reader.info(out["best"]["step"])
    reader.close()
    threshold = info["threshold"]
    assert info["flip_tta"] is True and info["temperature"] is None
    assert results["val_cls_shifted"]["threshold"] == threshold == results["val_cls"]["threshold"]
    assert out["best"]["score"] == validation.selection_score(results, "shifted_score")
    written = evaluate.evaluate(config, tmp_path, which="best")
    assert set(names.SHIFTED_SETS) <= set(written)
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["threshold"] == threshold
    assert stored["sets"]["val_cls_shifted"]["threshold"] == threshold
