"""checkpointing: a damaged checkpoint is detected and named (with the one to use instead), a
resume falls back to the previous one, and only a real shape mismatch is called a misfit."""

import logging
import shutil

import grain
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


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _array_file(step_dir):  # the largest file of the merged OCDBT store: array bytes
    return max((p for p in (step_dir / "state" / "d").iterdir()), key=lambda p: p.stat().st_size)


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
