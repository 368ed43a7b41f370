"""postprocess: the 'lungs' post-processing on analytic masks (two lungs, a speck, a hole)."""

import numpy as np
import pytest

from multimix_jax import postprocess, sources
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


def test_evaluate_scores_and_reports_the_post_processed_masks(tmp_path, monkeypatch):
    """An extra segmentation folder whose fake predictions (mask probability = gray / 255)
    hold the two true lungs plus a speck and a hole: Dice 1 only when post-processed."""
    import json
    from PIL import Image
    from multimix_jax import evaluate
    from tests import fake_model
    from tests.conftest import tiny_train_config
    fake_model.install(monkeypatch)
    lungs = two_lungs()
    image = np.where(lungs, 230, 25).astype(np.uint8)
    image[0, 31] = 220  # speck
    image[10:16, 6:10] = 40  # hole
    (tmp_path / "seg" / "images").mkdir(parents=True)
    (tmp_path / "seg" / "masks").mkdir()
    Image.fromarray(image).save(tmp_path / "seg" / "images" / "a.png")
    Image.fromarray(lungs.astype(np.uint8) * 255).save(tmp_path / "seg" / "masks" / "a.png")
    config = tiny_train_config()
    config.data.eval_sets = {}
    extra = sources.extra_sources(config, {"site": ("segmentation", str(tmp_path / "seg"))})
    plain = evaluate.evaluate(config, tmp_path, extra_sets=extra, output_dir=tmp_path / "plain")
    config.eval.mask_postprocess = "lungs"
    done = evaluate.evaluate(config, tmp_path, extra_sets=extra, output_dir=tmp_path / "out")
    assert plain["site"]["dice"] < 0.99 and done["site"]["dice"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["mask_postprocess"] == "lungs"
    assert "Masks post-processed (eval.mask_postprocess=lungs)" in (
        tmp_path / "out" / "results.md").read_text()
    assert "post-processed" not in (tmp_path / "plain" / "results.md").read_text()
