"""checkpointing: one manager keeps the latest and the best, a checkpoint is chosen by name or
step with its info, a damaged checkpoint is detected and named (with the one to use instead),
a resume falls back to the previous one, and only a real shape mismatch is called a misfit."""

import logging
import shutil

import grain
import numpy as np
import pytest

from multimix_jax import checkpointing, errors, sharding
from multimix_jax import state as train_state
from tests.conftest import tiny_train_config


def _position():
    return iter(grain.MapDataset.range(4).to_iter_dataset())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A workdir with checkpoints 1 and 2 of a tiny state, and that state's abstract."""
    workdir = tmp_path_factory.mktemp("ckpt") / "run"
    _, _, state = train_state.setup(tiny_train_config(), sharding.make_mesh(), steps_per_epoch=1)
    checkpointer = checkpointing.Checkpointer(workdir, keep=3)
    for step in (1, 2):
        checkpointer.save(step, state, _position())
    checkpointer.close()
    return workdir, checkpointing.abstract_like(state)


def _abstract_state(config):
    _, _, state = train_state.setup(config, sharding.make_mesh(), steps_per_epoch=1)
    return checkpointing.abstract_like(state)


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _array_file(step_dir):  # the largest file of the merged OCDBT store: array bytes
    return max((p for p in (step_dir / "state" / "d").iterdir()), key=lambda p: p.stat().st_size)


def test_one_manager_keeps_the_latest_and_the_best(tmp_path):
    checkpointer = checkpointing.Checkpointer(tmp_path, keep=2)
    state = {"w": np.zeros(3, np.float32)}
    for step, score in ((1, 0.9), (2, 0.1), (3, None), (4, 0.3), (5, 0.2)):
        info = checkpointing.checkpoint_info(score, {"val_cls": {"accuracy": score}},
                                             {"threshold": 0.5, "temperature": None}) \
            if score is not None else None
        checkpointer.save(step, dict(state, w=state["w"] + step), _position(), info)
    checkpointer.close()
    reader = checkpointing.Checkpointer(tmp_path, read_only=True)
    assert reader.steps() == [1, 4, 5] and reader.best_step() == 1
    assert reader.info(1) == {"val_score": 0.9, "threshold": 0.5, "temperature": None,
                              "val": {"val_cls": {"accuracy": 0.9}}}
    reader.close()
    restored, step, info = checkpointing.restore_for_inference(tmp_path, state, "best")
    assert step == 1 and restored["w"][0] == 1 and info["val_score"] == 0.9


def test_checkpoint_choice_info_and_errors(trained, tmp_path):
    config = tiny_train_config(num_steps=2)
    abstract = _abstract_state(config)
    for which in ("best", "latest", 2, "2"):
        _, step, info = checkpointing.restore_for_inference(trained, abstract, which)
        assert step == 2
    assert set(info) == {"val_score", "threshold", "temperature", "flip_tta", "encoded_prior",
                         "score_crossing", "val"}
    assert 0 <= info["val_score"] <= 1 and info["threshold"] == 0.5  # the default rule
    encoded = info["encoded_prior"]  # the prior its probabilities encode (prior.py)
    assert encoded is None or 0 < encoded < 1
    assert info["score_crossing"] is None  # a few validation films: no mixture (drift.py)
    assert {"val_cls", "val_seg"} <= set(info["val"])
    with pytest.raises(errors.UserError, match="--checkpoint 'foo': expected 'best'"):
        checkpointing.restore_for_inference(trained, abstract, "foo")
    with pytest.raises(errors.CheckpointNotFoundError, match="step 7 is not kept"):
        checkpointing.restore_for_inference(trained, abstract, 7)
    missing = tmp_path / "mistyped"
    with pytest.raises(errors.CheckpointNotFoundError, match="train first"):
        checkpointing.restore_for_inference(missing, abstract, "best")
    assert not missing.exists()


def test_a_checkpoint_restored_into_another_model_is_one_message(trained):
    config = tiny_train_config(num_steps=2)
    config.model.widths = (4, 8, 8, 16, 32)
    with pytest.raises(errors.UserError, match="does not fit the model of this config"):
        checkpointing.restore_for_inference(trained, _abstract_state(config), "best")


DAMAGE = {
    "flipped array bytes": lambda d: _flip(_array_file(d)),
    "truncated array file": lambda d: _truncate(_array_file(d)),
    "damaged metadata": lambda d: (d / "state" / "_METADATA").write_text("{garbage"),
    "truncated manifest": lambda d: _truncate(d / "state" / "manifest.ocdbt"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_checkpoint_is_named_with_the_one_to_use(saved, tmp_path, damage):
    workdir = shutil.copytree(saved[0], tmp_path / "run")
    DAMAGE[damage](workdir / "checkpoints" / "2")
    with pytest.raises(errors.DamagedCheckpointError,
                       match=r"^checkpoint 2 is damaged \(.*\); use --checkpoint 1$"):
        checkpointing.restore_for_inference(workdir, saved[1], "latest")
    _, step, _ = checkpointing.restore_for_inference(workdir, saved[1], 1)
    assert step == 1


def test_resume_sets_a_damaged_checkpoint_aside_and_uses_the_one_before(saved, tmp_path, caplog):
    workdir = shutil.copytree(saved[0], tmp_path / "run")
    _flip(_array_file(workdir / "checkpoints" / "2"))
    checkpointer = checkpointing.Checkpointer(workdir, keep=3)
    with caplog.at_level(logging.WARNING, logger="multimix_jax"):
        _, step = checkpointer.restore(saved[1], _position())
    checkpointer.close()
    assert step == 1 and "checkpoint 2 is damaged" in caplog.text
    assert (workdir / checkpointing.DAMAGED / "2").is_dir()
    assert not (workdir / "checkpoints" / "2").exists()


def test_only_a_real_shape_mismatch_is_called_a_misfit(saved):
    config = tiny_train_config()
    config.model.widths = (4, 8, 8, 16, 32)
    _, _, other = train_state.setup(config, sharding.make_mesh(), steps_per_epoch=1)
    with pytest.raises(errors.UserError, match="does not fit the model of this config"):
        checkpointing.restore_for_inference(saved[0], checkpointing.abstract_like(other), 2)
