"""workdir: the training lock (one winner of any race, also over a stale lock)."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from multimix_jax import errors
from multimix_jax import workdir as workdir_lib
from tests.conftest import REPO

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
        "    splits = input_pipeline.make_splits(config)\n"
        "    it = iter(input_pipeline.train_dataset(config, splits))\n"
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
