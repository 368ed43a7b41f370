"""plan.Plan: the streams, loss terms and metrics a config trains with, decided once."""

import pytest

from multimix_jax import errors
from multimix_jax.plan import Plan
from tests.conftest import tiny_config


def test_streams_follow_the_config():
    config = tiny_config()
    assert Plan.from_config(config).streams == ("seg_labeled", "seg_unlabeled", "cls_labeled",
                                                "cls_unlabeled")
    config.loss.kl, config.loss.fixmatch = "none", False
    assert Plan.from_config(config).streams == ("seg_labeled", "cls_labeled")
    config.tasks.segmentation = False
    assert Plan.from_config(config).streams == ("cls_labeled",)


def test_loss_terms_carry_their_config_weights_in_the_order_they_are_added():
    config = tiny_config()
    config.loss.dice_weight, config.loss.kl_weight = 0.25, 0.5
    config.loss.cls_weight, config.loss.fixmatch_weight = 2.0, 3.0
    plan = Plan.from_config(config)
    assert plan.loss_weights == (("dice", 0.25), ("kl", 0.5), ("cls", 2.0), ("fixmatch", 3.0))
    assert plan.metric_names == ("loss", "cls_loss", "accuracy", "fixmatch_loss", "mask_rate",
                                 "dice_loss", "train_dice", "kl_loss")
    config.loss.kl = "original"  # the original's (zero) KL is still a term of the loss
    assert ("kl", 0.5) in Plan.from_config(config).loss_weights


@pytest.mark.parametrize("task, streams, terms, metrics", [
    ("segmentation", ("cls_labeled", "cls_unlabeled"), ("cls", "fixmatch"),
     ("loss", "cls_loss", "accuracy", "fixmatch_loss", "mask_rate")),
    ("classification", ("seg_labeled", "seg_unlabeled"), ("dice", "kl"),
     ("loss", "dice_loss", "train_dice", "kl_loss")),
])
def test_a_task_switched_off_takes_its_streams_terms_and_metrics(task, streams, terms, metrics):
    config = tiny_config()
    setattr(config.tasks, task, False)
    plan = Plan.from_config(config)
    assert plan.streams == streams and plan.metric_names == metrics
    assert tuple(name for name, _ in plan.loss_weights) == terms
    assert plan.seg_streams == tuple(s for s in streams if s.startswith("seg"))


def test_fixmatch_without_classification_adds_nothing():
    config = tiny_config()
    config.tasks.classification = False
    config.loss.kl = "none"
    plan = Plan.from_config(config)
    assert plan.streams == ("seg_labeled",) and not plan.fixmatch and not plan.seg_kl


def test_no_task_is_a_user_error_naming_the_field():
    config = tiny_config()
    config.tasks.segmentation = config.tasks.classification = False
    with pytest.raises(errors.UserError, match="config.tasks"):
        Plan.from_config(config)


def test_the_occlusion_term_adds_its_view_term_and_metric_and_keeps_its_stream_without_kl():
    config = tiny_config()
    assert not Plan.from_config(config).seg_consistency  # the paper: off
    config.loss.seg_consistency_weight = 2.5
    plan = Plan.from_config(config)
    assert plan.seg_consistency and plan.stream_images("seg_unlabeled") == ("image", "occluded")
    assert plan.stream_images("cls_unlabeled") == ("weak", "strong")
    assert plan.loss_weights[:3] == (("dice", 5.0), ("kl", 0.01), ("occlusion", 2.5))
    assert plan.metric_names[-1] == "occlusion_loss"
    assert plan.image_rows("occluded", 10) == 5 and plan.image_rows("image", 10) == 10
    assert plan.image_rows("occluded", 1) == 1
    config.loss.kl = "none"
    plan = Plan.from_config(config)
    assert "seg_unlabeled" in plan.streams and not plan.seg_kl
    assert [name for name, _ in plan.loss_weights] == ["dice", "occlusion", "cls", "fixmatch"]
    config.tasks.segmentation = False
    assert not Plan.from_config(config).seg_consistency
