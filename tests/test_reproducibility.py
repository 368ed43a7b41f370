"""What the README promises about reproducibility: the same code, config and seed on the same
kind of machine (the same CPU instruction set as XLA sees it, the same number of usable cores)
give bit-identical parameters and results, in fresh processes. (Another instruction set or
core count changes XLA:CPU's kernels and reduction splits, hence the float rounding.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = r"""
import hashlib, json, sys
import jax, numpy as np
sys.path.insert(0, sys.argv[2])
from tests.conftest import tiny_train_config
from multimix_jax import evaluate, train
config = tiny_train_config(num_steps=4)
out = train.train_and_evaluate(config, sys.argv[1])
evaluate.evaluate(config, sys.argv[1])
leaves = jax.tree_util.tree_leaves(jax.device_get(out["state"].params))
print("PARAMS", hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in leaves)).hexdigest())
"""


def _run(workdir) -> tuple[str, dict]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(workdir), str(REPO)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    params = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("PARAMS")]
    results = json.loads((workdir / "results.json").read_text())
    results.pop("workdir", None)  # the only field that names the folder
    return params[0], results


@pytest.mark.slow  # two fresh processes that compile and train: minutes
def test_same_config_and_seed_give_bit_identical_runs_in_fresh_processes(tmp_path):
    first, second = _run(tmp_path / "a"), _run(tmp_path / "b")
    assert first[0] == second[0]
    assert json.dumps(first[1], sort_keys=True) == json.dumps(second[1], sort_keys=True)
