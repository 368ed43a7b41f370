"""postprocess: the 'lungs' post-processing on analytic masks (two lungs, a speck, a hole)."""

import numpy as np
import pytest

from multimix_jax import postprocess
from multimix_jax.errors import UserError


def two_lungs(size: int = 32) -> np.ndarray:
    """Two rectangles of unequal size, 'left' and 'right' lung."""
    mask = np.zeros((size, size), bool)
    mask[4:28, 3:13] = True
    mask[6:26, 18:28] = True
    return mask


def test_two_lungs_are_kept_unchanged():
    lungs = two_lungs()
    np.testing.assert_array_equal(postprocess.keep_lungs(lungs), lungs)


def test_a_speck_and_a_third_component_are_removed():
    lungs = two_lungs()
    noisy = lungs.copy()
    noisy[0, 31] = True  # a speck in a corner
    noisy[29:32, 0:3] = True  # a third, small component
    np.testing.assert_array_equal(postprocess.keep_lungs(noisy), lungs)


def test_a_small_second_component_is_a_speck():
    one_lung = np.zeros((32, 32), bool)
    one_lung[4:28, 3:15] = True
    with_speck = one_lung.copy()
    with_speck[10:12, 25:27] = True  # 4 px: under a tenth of the lung, though second largest
    np.testing.assert_array_equal(postprocess.keep_lungs(with_speck), one_lung)


def test_a_hole_is_filled():
    lungs = two_lungs()
    holed = lungs.copy()
    holed[10:16, 6:10] = False  # an opacity the model missed, inside the left lung
    np.testing.assert_array_equal(postprocess.keep_lungs(holed), lungs)


def test_predictions_are_post_processed_only_when_asked():
    prob = np.where(two_lungs(), 0.9, 0.1).astype(np.float32)
    prob[0, 31] = 0.8
    prob[12, 8] = 0.2
    predictions = {"mask_prob": prob[None], "prob_pneumonia": np.array([0.3])}
    unchanged = postprocess.apply_to_predictions(predictions, "none")
    np.testing.assert_array_equal(unchanged["mask_prob"], predictions["mask_prob"])
    done = postprocess.apply_to_predictions(predictions, "lungs")
    np.testing.assert_array_equal(done["mask_prob"][0] >= 0.5, two_lungs())
    assert done["mask_prob_raw"] is predictions["mask_prob"]
    empty = postprocess.binary_masks(np.zeros((1, 8, 8)), "lungs")
    assert not empty.any()
    with pytest.raises(UserError, match="eval.mask_postprocess=largest: expected one of"):
        postprocess.apply_to_predictions(predictions, "largest")
