"""config_check: every bad config value is one sentence before any data is read; ~ is
expanded in config paths; an output that cannot be written is named."""

import os

import pytest

from multimix_jax import config_check
from multimix_jax.errors import UserError
from tests.conftest import tiny_train_config


@pytest.mark.parametrize("field, value, expected", [
    ("data.image_size", 100, "data.image_size=100: expected a multiple of 16"),
    ("data.image_size", 16, "at least 32"),
    ("model.widths", "abc", "model.widths=abc: expected 5 positive whole numbers"),
    ("model.widths", (4, 8), "expected 5 positive"),
    ("labels.cls", 100000, "labels.cls=100000: more than the 32 training examples"),
    ("labels.seg", 0, "labels.seg=0: expected a positive number or 'all'"),
    ("data.per_stream_batch", 0, "data.per_stream_batch=0: expected a whole number >= 1"),
    ("eval.threshold", "youden", "eval.threshold=youden: expected one of fixed, fitted"),
    ("loss.kl", "bernouli", "loss.kl=bernouli: expected one of bernoulli, original, none"),
    ("loss.seg_consistency_weight", -1.0, "loss.seg_consistency_weight=-1.0: expected a number"),
    ("data.cls.kind", "folders", "data.cls.kind=folders: expected one of synthetic, folder"),
    ("train.best_metric", "accuracy", "train.best_metric=accuracy: expected one of val_score"),
    ("train.best_metric", "val_cls_shifted/accuracy", "SET a set this run validates"),
    ("train.keep_checkpoints", 0, "train.keep_checkpoints=0"),
    ("optim.learning_rate", -1.0, "optim.learning_rate=-1.0: expected a positive number"),
])
def test_a_bad_value_is_one_sentence_naming_the_override(field, value, expected):
    config = tiny_train_config()
    node = config
    *groups, last = field.split(".")
    for group in groups:
        node = node[group]
    with node.ignore_type():
        node[last] = value
    with pytest.raises(UserError, match=expected.replace("(", r"\(")):
        config_check.check_config_values(config)


def test_the_default_configs_pass():
    from configs import default, paper, shared_real
    from multimix_jax import variants
    for module in (default, paper, shared_real):
        for variant in variants.VARIANTS:
            config_check.check_config_values(module.get_config(variant))
    config_check.check_config_values(tiny_train_config())


def test_tilde_is_expanded_in_every_path_field(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    from configs import paper
    config = paper.get_config()
    config.data_dir = "~/tfds"
    config.data.eval_sets.nihx.path = "~/x"
    config_check.expand_user_paths(config)
    assert config.data.cls.data_dir == f"{tmp_path}/tfds"  # linked to data_dir
    assert config.data.eval_sets.chex_test.data_dir == f"{tmp_path}/tfds"
    assert config.data.eval_sets.nihx.path == f"{tmp_path}/x"


def test_an_output_that_cannot_be_written_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="--output .*file: is a file, not a folder"):
        config_check.check_writable(tmp_path / "file", "--output")
    with pytest.raises(UserError, match="--output /proc/nope: cannot write there"):
        config_check.check_writable("/proc/nope", "--output")
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        with pytest.raises(UserError, match="cannot write there"):
            config_check.check_writable(tmp_path / "ro" / "out", "--output")
    config_check.check_writable(tmp_path / "new" / "out", "--output")
    assert (tmp_path / "new" / "out").is_dir()


def test_batches_must_split_evenly_over_the_devices():
    config = tiny_train_config()
    config.data.per_stream_batch, config.data.eval_batch_size = 4, 6
    config_check.check_batch_divisible(config, 2)
    with pytest.raises(UserError, match=r"^--config.data.eval_batch_size=6: must be a multiple "
                                        r"of the 4 devices$"):
        config_check.check_batch_divisible(config, 4)
