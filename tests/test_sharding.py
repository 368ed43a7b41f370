"""Multi-process data parallelism: each process feeds only its rows of every global batch
(``input_pipeline.train_dataset``, placed by ``sharding.shard_batch``), and two CPU processes
joined by ``jax.distributed`` train exactly like one process on the same global batches."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import grain
import jax
import numpy as np
import pytest

from multimix_jax import evaluation, input_pipeline, sharding, sources, steps
from multimix_jax import state as train_state
from multimix_jax.plan import Plan
from tests.conftest import REPO, tiny_train_config

NUM_STEPS = 3


def _config():
    config = tiny_train_config()
    config.data.per_stream_batch = 4
    config.model.dropout_rate = 0.25  # on: its bits must not depend on the process split
    return config


def _batches(config, count, process_index=None, process_count=None):
    splits = sources.make_splits(config)
    ds = input_pipeline.train_dataset(config, splits, Plan.from_config(config).streams,
                                      process_index, process_count)
    iterator = iter(ds)
    return [next(iterator) for _ in range(count)]


def test_epoch_shuffle_is_a_new_seeded_permutation_each_epoch():
    ds = input_pipeline.EpochShuffle(grain.MapDataset.range(7).seed(3)).repeat()
    epochs = [[ds[e * 7 + i] for i in range(7)] for e in range(3)]
    for e, order in enumerate(epochs):
        assert sorted(order) == list(range(7))
        assert order == np.random.default_rng([ds._parent._seed, e]).permutation(7).tolist()
    assert epochs[0] != epochs[1] != epochs[2]
    again = input_pipeline.EpochShuffle(grain.MapDataset.range(7).seed(3)).repeat()
    assert [again[i] for i in range(21)] == sum(epochs, [])
    with pytest.raises(ValueError, match="needs a seed"):
        input_pipeline.EpochShuffle(grain.MapDataset.range(7))


def test_processes_get_disjoint_halves_whose_union_is_the_one_process_batch():
    config = _config()
    whole = _batches(config, 4, 0, 1)
    halves = [_batches(config, 4, p, 2) for p in range(2)]
    for step, batch in enumerate(whole):
        for stream, fields in batch.items():
            for key, value in fields.items():
                first, second = (halves[p][step][stream][key] for p in range(2))
                assert first.shape[0] == second.shape[0] == value.shape[0] // 2
                np.testing.assert_array_equal(np.concatenate([first, second]), value,
                                              err_msg=f"{step} {stream} {key}")


def test_a_batch_that_does_not_split_over_the_processes_is_one_clear_error():
    config = _config()
    config.data.per_stream_batch = 3
    with pytest.raises(ValueError, match=r"per_stream_batch=3 must be a multiple of the 2"):
        _batches(config, 1, 0, 2)


WORKER = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, process_id = sys.argv[1], int(sys.argv[2])
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                               process_id=process_id)
    from tests.test_sharding import run_steps
    print("RESULT", json.dumps(run_steps()), flush=True)
    jax.distributed.shutdown()  # a barrier: neither process exits while the other still runs
""")


def run_steps(devices=None) -> dict:
    """Train NUM_STEPS steps over all processes' devices; the losses and the gathered
    predictions of the first validation images (every process must see all of them)."""
    config = _config()
    mesh = sharding.make_mesh(devices)
    splits = sources.make_splits(config)
    model, tx, state = train_state.setup(config, mesh, steps_per_epoch=100)
    iterator = iter(input_pipeline.train_dataset(config, splits, Plan.from_config(config).streams))
    train_step = steps.jit_train_step(model, tx, config, mesh)
    losses = []
    for _ in range(NUM_STEPS):
        state, metrics = train_step(state, sharding.shard_batch(next(iterator), mesh))
        losses.append(float(metrics.compute()["loss"]))
    first = sources.SubsetSource(splits.seg_val, range(3))  # 3: the last batch is padded
    out = evaluation.run_predictions(steps.jit_predict(model, mesh), state.params, first,
                                     batch_size=2, image_size=config.data.image_size, mesh=mesh)
    return {"losses": losses, "mask_probs": out["mask_prob"].tolist(),
            "devices": jax.device_count(), "processes": jax.process_count()}


TRAIN_WORKER = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, process_id, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                               process_id=process_id)
    from tests.test_distributed import train_two_processes
    print("RESULT", json.dumps(train_two_processes(workdir)), flush=True)
    jax.distributed.shutdown()
""")


def train_two_processes(workdir: str) -> dict:
    """``train_and_evaluate`` with validation (fitted threshold, calibration), image summaries
    and checkpoints in each of two processes: what each process saw."""
    from multimix_jax import train
    config = _config()
    config.train.num_steps, config.train.eval_every_steps = 2, 2
    config.train.checkpoint_every_steps, config.train.num_image_summaries = 2, 2
    config.eval.threshold, config.eval.calibrate = "fitted", True
    out = train.train_and_evaluate(config, workdir)
    return {"best": out["best"]["score"], "step": out["best"]["step"],
            "results": out["results"], "processes": jax.process_count()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _two_processes(tmp_path, worker: str, *args: str) -> list[dict]:
    """Runs ``worker`` (PORT PROCESS_ID *ARGS) in two processes joined by jax.distributed;
    the RESULT each printed."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), XLA_FLAGS="")
    port = str(_free_port())
    logs = [(tmp_path / f"out{i}.txt", tmp_path / f"err{i}.txt") for i in range(2)]
    procs = []
    for i, (out, err) in enumerate(logs):
        with open(out, "w") as stdout, open(err, "w") as stderr:
            procs.append(subprocess.Popen([sys.executable, "-c", worker, port, str(i), *args],
                                          cwd=REPO, env=env, stdout=stdout, stderr=stderr,
                                          text=True))
    try:
        for proc in procs:
            proc.wait(timeout=900)
    finally:
        for proc in procs:
            proc.kill()
    for proc, (_, err) in zip(procs, logs):
        assert proc.returncode == 0, err.read_text()[-3000:]
    return [json.loads(out.read_text().split("RESULT", 1)[1]) for out, _ in logs]


@pytest.mark.slow  # ~3 min on 2 busy cores: two processes compile the step
def test_two_processes_train_like_one_process_on_the_same_global_batch(tmp_path):
    results = _two_processes(tmp_path, WORKER)
    assert all(r["devices"] == 2 and r["processes"] == 2 for r in results)
    single = run_steps(jax.devices()[:1])  # this process alone, its batches whole
    assert single["processes"] == 1
    for result in results:
        np.testing.assert_allclose(result["losses"], single["losses"], rtol=1e-5)
        np.testing.assert_allclose(result["mask_probs"], single["mask_probs"], atol=1e-5)


@pytest.mark.slow  # minutes on 2 busy cores: two processes compile the step and predict
def test_two_processes_train_validate_summarise_and_checkpoint_without_hanging(tmp_path):
    """The loop's validation, image summaries and checkpoint run the same jitted calls in
    every process (computed on all, written by the chief): nothing waits for a call that
    another process never makes."""
    from multimix_jax import checkpointing
    workdir = tmp_path / "run"
    results = _two_processes(tmp_path, TRAIN_WORKER, str(workdir))
    assert all(r["processes"] == 2 and r["step"] == 2 for r in results)
    assert results[0] == results[1]  # both processes validated the same predictions
    reader = checkpointing.Checkpointer(workdir, read_only=True)
    info = reader.info(2)
    reader.close()
    assert info["threshold"] is not None and info["temperature"] is not None
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))  # the chief's
