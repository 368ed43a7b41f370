"""A run that never silently goes wrong: recorded config compared on resume/evaluate, one
training run per workdir, divergence and non-finite stops, checkpoint choice and info, no
duplicate metric rows after a resume, and one-line CLI errors for bad input."""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from multimix_jax import checkpointing, errors, sharding, summaries, train
from multimix_jax import state as train_state
from multimix_jax import workdir as workdir_lib
from tests.conftest import REPO, tiny_train_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-step tiny run (validated and checkpointed at step 2)."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train.train_and_evaluate(tiny_train_config(num_steps=2), workdir)
    return workdir


def pathlib_copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _abstract_state(config):
    _, _, state = train_state.setup(config, sharding.make_mesh(), steps_per_epoch=1)
    return checkpointing.abstract_like(state)


# --------------------------------------------------------------------------- loop helpers
def test_itstime_every_n_last_and_first():
    hits = [s for s in range(1, 11) if train.itstime(s, 4, 10, first=1)]
    assert hits == [1, 4, 8, 10]
    assert [s for s in range(1, 6) if train.itstime(s, 0, 5)] == [5]


def test_loss_watch_flags_an_interval_far_above_the_lowest():
    watch = train._LossWatch(factor=20.0)
    assert watch.check(4.2, 1) is None and watch.check(3.0, 2) is None
    assert "diverged at step 3" in watch.check(3.0 * 21, 3)
    assert train._LossWatch(factor=0.0).check(1e30, 1) is None


# --------------------------------------------------------------------------- recorded config
def test_changed_fields_are_named_with_both_values(tmp_path):
    config = tiny_train_config()
    workdir_lib.write_recorded(tmp_path, config)
    config.data.image_size = 64
    config.model.widths = (4, 8, 8, 16, 32)
    config.train.num_steps = 99  # run length: allowed
    with pytest.raises(errors.ConfigMismatchError) as error:
        workdir_lib.check_config(config, tmp_path, inference=True)
    message = str(error.value)
    assert "data.image_size 32 -> 64" in message and "model.widths" in message
    assert "16, 16] -> [4, 8, 8, 16, 32]" in message and "train.num_steps" not in message
    assert "--allow_config_change=data.image_size,model.widths" in message
    accepted = workdir_lib.check_config(config, tmp_path, allow=["model", "data.image_size"])
    assert {name for name, _, _ in accepted} == {"model.widths", "data.image_size",
                                                 "train.num_steps"}
    assert workdir_lib.check_config(config, tmp_path, allow=["all"])


def test_training_only_fields_matter_to_resume_not_to_evaluate(tmp_path):
    config = tiny_train_config()
    workdir_lib.write_recorded(tmp_path, config)
    config.optim.learning_rate = 1e-2
    assert workdir_lib.check_config(config, tmp_path, inference=True)
    with pytest.raises(errors.ConfigMismatchError, match="optim.learning_rate"):
        workdir_lib.check_config(config, tmp_path)


def test_a_field_missing_from_an_older_record_is_refused_unless_its_default_is_old(tmp_path):
    config = tiny_train_config()
    recorded = workdir_lib.config_dict(config)
    del recorded["loss"]["dice_smooth"]  # a field added after the run was made
    del recorded["data"]["cls"]["unlabeled_extra"]  # added with the old behaviour as default
    (tmp_path / workdir_lib.CONFIG_FILE).write_text(json.dumps(recorded))
    with pytest.raises(errors.ConfigMismatchError, match=r"loss.dice_smooth \"<not recorded>\" "
                       r"-> 1.0.*--allow_config_change=loss.dice_smooth") as error:
        workdir_lib.check_config(config, tmp_path)
    assert "unlabeled_extra" not in str(error.value)
    assert workdir_lib.check_config(config, tmp_path, allow=["loss.dice_smooth"])


def test_a_moved_data_root_is_the_same_data_and_is_recorded(tmp_path):
    config = tiny_train_config()
    config.data_root = "/old/data"
    config.data.cls.path = "/old/data/kermany/train"
    workdir_lib.write_recorded(tmp_path, config)
    config.data_root = "/new/place"
    config.data.cls.path = "/new/place/kermany/train"
    accepted = workdir_lib.check_config(config, tmp_path)
    assert accepted == [("data_root", "/old/data", "/new/place")]
    workdir_lib.record_config(config, tmp_path, accepted, step=5)
    change = json.loads((tmp_path / workdir_lib.CHANGES_FILE).read_text())
    assert change == {"step": 5, "field": "data_root", "old": "/old/data", "new": "/new/place"}
    config.data.cls.path = "/new/place/other/train"
    with pytest.raises(errors.ConfigMismatchError, match="data.cls.path"):
        workdir_lib.check_config(config, tmp_path)


@pytest.mark.parametrize("field, value", [("eval.shifted_validation", True),
                                          ("eval.flip_tta", True)])
def test_eval_fields_that_change_the_validation_score_are_refused_on_resume(tmp_path, field,
                                                                              value):
    config = tiny_train_config()
    workdir_lib.write_recorded(tmp_path, config)
    config.update_from_flattened_dict({field: value, "eval.model_name": "other"})
    with pytest.raises(errors.ConfigMismatchError, match=f"{field} false -> true") as error:
        workdir_lib.check_config(config, tmp_path)
    assert "eval.model_name" not in str(error.value)


def test_a_resume_with_another_worker_count_is_refused_in_one_sentence(tmp_path):
    config = tiny_train_config()
    workdir_lib.write_recorded(tmp_path, config)
    config.data.worker_count = 1
    for allow in ((), ("data.worker_count",), ("all",)):
        with pytest.raises(errors.ConfigMismatchError,
                           match=r"data.worker_count cannot change on resume \(0 -> 1\).*"
                                 r"resume with data.worker_count=0"):
            workdir_lib.check_config(config, tmp_path, allow=allow)
    assert workdir_lib.check_config(config, tmp_path, inference=True)  # evaluate: no iterator


def test_an_unset_data_root_takes_the_recorded_one(tmp_path):
    config = tiny_train_config()
    config.data_root = "/recorded/root"
    workdir_lib.write_recorded(tmp_path, config)
    config.data_root = ""
    workdir_lib.adopt_recorded_data_root(config, tmp_path)
    assert config.data_root == "/recorded/root"


# --------------------------------------------------------------------------- lock
def test_a_second_run_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    with workdir_lib.training_lock(tmp_path):
        with pytest.raises(errors.WorkdirLockedError,
                           match=f"pid {os.getpid()} on {socket.gethostname()}"):
            with workdir_lib.training_lock(tmp_path):
                pass
        with pytest.raises(errors.WorkdirLockedError, match="being trained by pid"):
            train.train_and_evaluate(tiny_train_config(), tmp_path)
    assert not (tmp_path / workdir_lib.LOCK_FILE).exists()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / workdir_lib.LOCK_FILE).write_text(json.dumps(
        {"pid": gone.pid, "host": socket.gethostname(), "started": "then"}))
    with workdir_lib.training_lock(tmp_path):
        assert json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())["pid"] == os.getpid()


# --------------------------------------------------------------------------- metrics rows
def test_rows_of_steps_after_the_restored_one_are_dropped(tmp_path):
    rows = [{"step": s, "train/loss": 1.0} for s in (1, 2, 3, 4)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    writer = summaries.MetricWriter(tmp_path, start_step=2)
    writer.write_scalars(3, {"train/loss": 0.5})
    writer.close()
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["train/loss"]) for r in logged] == [(1, 1.0), (2, 1.0), (3, 0.5)]


# --------------------------------------------------------------------------- checkpoints
class _Position:
    def get_state(self) -> bytes:
        return b'{"next_index": 0}'


def test_one_manager_keeps_the_latest_and_the_best(tmp_path):
    checkpointer = checkpointing.Checkpointer(tmp_path, keep=2)
    state = {"w": np.zeros(3, np.float32)}
    for step, score in ((1, 0.9), (2, 0.1), (3, None), (4, 0.3), (5, 0.2)):
        info = checkpointing.checkpoint_info(score, {"val_cls": {"accuracy": score}},
                                             {"threshold": 0.5, "temperature": None}) \
            if score is not None else None
        checkpointer.save(step, dict(state, w=state["w"] + step), _Position(), info)
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
    assert set(info) == {"val_score", "threshold", "temperature", "flip_tta", "val_prior", "val"}
    assert 0 <= info["val_score"] <= 1 and info["threshold"] == 0.5  # the default rule
    assert 0 <= info["val_prior"] <= 1  # the validation's pneumonia fraction (prior.py)
    assert {"val_cls", "val_seg"} <= set(info["val"])
    with pytest.raises(errors.UserError, match="--checkpoint 'foo': expected 'best'"):
        checkpointing.restore_for_inference(trained, abstract, "foo")
    with pytest.raises(errors.CheckpointNotFoundError, match="step 7 is not kept"):
        checkpointing.restore_for_inference(trained, abstract, 7)
    missing = tmp_path / "mistyped"
    with pytest.raises(errors.CheckpointNotFoundError, match="train first"):
        checkpointing.restore_for_inference(missing, abstract, "best")
    assert not missing.exists()


def test_resume_with_another_model_gives_one_message(trained, tmp_path):
    workdir = pathlib_copy(trained, tmp_path / "run")
    config = tiny_train_config(num_steps=4)
    config.model.widths = (4, 8, 8, 16, 32)
    with pytest.raises(errors.ConfigMismatchError, match="model.widths"):
        train.train_and_evaluate(config, workdir)
    with pytest.raises(errors.UserError, match="does not fit the model of this config"):
        checkpointing.restore_for_inference(workdir, _abstract_state(config), "best")


def test_resume_after_a_kill_logs_each_step_once(trained, tmp_path):
    workdir = pathlib_copy(trained, tmp_path / "run")
    with open(workdir / "metrics.jsonl", "a") as f:  # logged by a run killed before step 4
        f.write(json.dumps({"step": 3, "train/loss": 99.0}) + "\n")
    train.train_and_evaluate(tiny_train_config(num_steps=3), workdir)
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if r["step"] == 3 and "train/loss" in r]
    assert len(losses) == 1 and losses[0] != 99.0
    changes = (workdir / workdir_lib.CHANGES_FILE).read_text()
    assert '"field": "train.num_steps", "old": 2, "new": 3' in changes


# --------------------------------------------------------------------------- stops
def test_an_exploding_loss_stops_the_run(tmp_path):
    config = tiny_train_config(num_steps=6)
    config.optim.learning_rate = 1e6
    with pytest.raises(errors.DivergenceError, match="diverged at step"):
        train.train_and_evaluate(config, tmp_path)


@pytest.mark.parametrize("field, value, error", [
    ("learning_rate", 1e6, errors.DivergenceError),  # diverged between log steps
    ("b2", 1.0, errors.NonFiniteLossError),  # NaN weights after step 1, loss still finite
])
def test_diverged_or_nan_weights_are_never_validated_or_saved(tmp_path, field, value, error):
    config = tiny_train_config(num_steps=6)
    config.train.log_every_steps = 50  # logged at steps 1 and 6 only
    config.optim[field] = value
    with pytest.raises(error, match="at step 2.*no checkpoint was saved before it"):
        train.train_and_evaluate(config, tmp_path)
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]


class _Kept:
    def wait(self):
        pass

    def steps(self):
        return [2, 4]

    directory = "ckpts"


def test_the_last_good_checkpoint_is_none_written_after_the_last_clean_check():
    assert "(step 2)" in train._last_good(_Kept(), clean_step=3)
    assert "(step 4)" in train._last_good(_Kept(), clean_step=4)
    assert "no checkpoint" in train._last_good(_Kept(), clean_step=1)


def test_non_finite_loss_before_any_checkpoint_says_there_is_none(tmp_path):
    config = tiny_train_config(num_steps=2)
    config.optim.learning_rate = float("inf")
    with pytest.raises(errors.NonFiniteLossError, match="no checkpoint was saved before it"):
        train.train_and_evaluate(config, tmp_path)


# --------------------------------------------------------------------------- command line
def _cli(*args, cwd=REPO):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-m", "multimix_jax.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    return done.returncode, done.stderr.strip().splitlines()


@pytest.mark.parametrize("args, expected", [
    (["--config", "nope.py"], "--config nope.py: no such config file"),
    (["--config.train.nope=1"], "--config.train.nope=1: the config has no field 'nope'"),
    (["--config.labels.cls=abc"], "--config.labels.cls=abc: expected a positive number or 'all'"),
    (["--eval_cls_folder", "/no/such"], "--eval_cls_folder /no/such: expected NAME=DIR"),
    (["--mode", "evaluate", "--checkpoint", "foo"], "--checkpoint 'foo': expected 'best'"),
])
def test_bad_input_is_one_line_before_anything_runs(tmp_path, args, expected):
    workdir = tmp_path / "mistyped"
    if "--config" not in args:
        args = ["--config", "configs/default.py", *args]
    code, stderr = _cli(*args, "--workdir", str(workdir))
    assert code != 0 and not any("Traceback" in line for line in stderr), stderr
    assert stderr[-1].startswith("error: " + expected), stderr
    assert not workdir.exists()


def test_evaluate_at_another_image_size_is_refused(trained, tmp_path):
    config_file = tmp_path / "tiny.py"
    config_file.write_text("from tests.conftest import tiny_train_config\n\n\n"
                           "def get_config():\n    return tiny_train_config(num_steps=2)\n")
    code, stderr = _cli("--config", str(config_file), "--workdir", str(trained), "--mode",
                        "evaluate", "--config.data.image_size=64")
    assert code != 0 and "data.image_size 32 -> 64" in stderr[-1], stderr
    assert not (trained / "results.json").exists()
