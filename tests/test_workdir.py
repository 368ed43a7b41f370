"""workdir: the recorded config compared on resume and evaluate (changed fields named with
both values, what each may change), and the training lock (one winner of any race, also over a
stale lock; a locked workdir is not trained)."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from multimix_jax import errors, train
from multimix_jax import workdir as workdir_lib
from tests.conftest import REPO, tiny_train_config

# One racer: wait for the start time, try the lock, hold it a moment; print what happened.
RACER = """
import sys, time
from pathlib import Path
from multimix_jax import workdir, errors
start, folder = float(sys.argv[1]), Path(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
try:
    with workdir.training_lock(folder):
        got = time.time()
        time.sleep(0.2)
        print("won", got, time.time())
except errors.WorkdirLockedError as e:
    print("refused", e)
"""


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


@pytest.mark.parametrize("field, value", [("optim.learning_rate", 1e-2),
                                          ("data.cls.unlabeled_extra", "site_pool"),
                                          ("data.seg.unlabeled_extra_share", 0.25)])
def test_training_only_fields_matter_to_resume_not_to_evaluate(tmp_path, field, value):
    config = tiny_train_config()
    workdir_lib.write_recorded(tmp_path, config)
    config.update_from_flattened_dict({field: value})
    assert workdir_lib.check_config(config, tmp_path, inference=True)
    with pytest.raises(errors.ConfigMismatchError, match=field):
        workdir_lib.check_config(config, tmp_path)


def test_an_evaluation_leaves_out_the_splits_only_training_reads(tmp_path):
    val = {"films": 1, "sha256": "a", "entries": ["x"]}
    pool = {"films": 2, "sha256": "b", "entries": ["p", "q"]}
    workdir_lib.check_splits(tmp_path, {"cls_val": val, "cls_unlabeled_extra": pool},
                             compare=False, write=True)
    workdir_lib.check_splits(tmp_path, {"cls_val": val}, compare=True, write=False,
                             inference=True)  # evaluated without naming the pool: accepted
    with pytest.raises(errors.ConfigMismatchError, match=r"cls_unlabeled_extra \(2 of its 2"):
        workdir_lib.check_splits(tmp_path, {"cls_val": val}, compare=True, write=False)
    moved = {"films": 1, "sha256": "c", "entries": ["y"]}
    with pytest.raises(errors.ConfigMismatchError, match=r"cls_val \(1 of its 1"):
        workdir_lib.check_splits(tmp_path, {"cls_val": moved}, compare=True, write=False,
                                 inference=True)


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
def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def test_of_runs_racing_for_a_stale_lock_exactly_one_holds_it(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    stale = json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": "then"})
    for attempt in range(20):
        (tmp_path / workdir_lib.LOCK_FILE).write_text(stale)
        start = time.time() + 0.4
        racers = [subprocess.Popen([sys.executable, "-c", RACER, str(start), str(tmp_path)],
                                   env=env, stdout=subprocess.PIPE, text=True) for _ in range(4)]
        lines = [r.communicate(timeout=60)[0].strip() for r in racers]
        held = sorted((float(a), float(b)) for a, b in
                      (line.split()[1:] for line in lines if line.startswith("won")))
        assert held, lines
        for (_, end), (begin, _) in zip(held, held[1:]):  # never two holders at once
            assert begin >= end, f"attempt {attempt}: two runs held the lock: {lines}"
        assert all(line.startswith(("won", "refused")) for line in lines), lines


def test_the_refusal_names_the_holder_and_the_lock_goes_with_its_run(tmp_path):
    with workdir_lib.training_lock(tmp_path):
        holder = json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(errors.WorkdirLockedError,
                           match=f"being trained by pid {os.getpid()} on {socket.gethostname()}"):
            with workdir_lib.training_lock(tmp_path):
                pass
    assert not (tmp_path / workdir_lib.LOCK_FILE).exists()
    # a run killed with -9 leaves its file; the kernel has dropped its flock: taken over
    killed = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path;"
                               "from multimix_jax import workdir;"
                               "held = workdir.training_lock(Path(sys.argv[1])); held.__enter__();"
                               "print('in', flush=True); time.sleep(60)", str(tmp_path)],
                              env=dict(os.environ, PYTHONPATH=str(REPO)),
                              stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "in"
    with pytest.raises(errors.WorkdirLockedError, match=f"pid {killed.pid}"):
        with workdir_lib.training_lock(tmp_path):
            pass
    killed.kill()
    killed.wait()
    assert (tmp_path / workdir_lib.LOCK_FILE).exists()
    with workdir_lib.training_lock(tmp_path):
        assert json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_locked_workdir_is_not_trained(tmp_path):
    with workdir_lib.training_lock(tmp_path):
        with pytest.raises(errors.WorkdirLockedError, match="being trained by pid"):
            train.train_and_evaluate(tiny_train_config(), tmp_path)
    assert not (tmp_path / workdir_lib.LOCK_FILE).exists()


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    found = []
    for task in tasks:
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_grain_workers_do_not_outlive_a_kill_9_of_the_training_process(tmp_path):
    script = tmp_path / "workers.py"
    script.write_text(
        "import time\nfrom tests.conftest import tiny_train_config\n"
        "from multimix_jax import input_pipeline\n"
        "if __name__ == '__main__':\n"
        "    config = tiny_train_config()\n    config.data.worker_count = 1\n"
        "    splits = sources.make_splits(config)\n"
        "    it = iter(input_pipeline.train_dataset(config, splits, ['cls_labeled']))\n"
        "    next(it)\n    print('ready', flush=True)\n    time.sleep(300)\n")
    main = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu"))
    try:
        assert main.stdout.readline().strip() == "ready"
        workers = _children(main.pid)
        assert workers
    finally:
        main.kill()
        main.wait()
    deadline = time.time() + 30
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
