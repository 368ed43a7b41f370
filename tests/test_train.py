"""End to end: train_and_evaluate on a tiny synthetic config, exact resume, evaluate, predict;
the loop's helpers (when it is time, the divergence watch, the last good checkpoint) and its
stops (divergence, non-finite loss or weights, a resume with another model)."""

import json
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from multimix_jax import checkpointing, errors, evaluate, predict, sources, train
from multimix_jax import workdir as workdir_lib
from tests.conftest import tiny_train_config


def _params(state):
    return jax.tree_util.tree_map(np.asarray, state.params)


def test_killed_and_resumed_run_equals_an_uninterrupted_run(tmp_path):
    config = tiny_train_config(num_steps=4)
    straight = train.train_and_evaluate(config, tmp_path / "straight")
    first = train.train_and_evaluate(config, tmp_path / "resumed", stop_at_step=2)
    assert int(first["state"].step) == 2
    resumed = train.train_and_evaluate(config, tmp_path / "resumed")
    assert int(resumed["state"].step) == 4
    for a, b in zip(jax.tree_util.tree_leaves(_params(straight["state"])),
                    jax.tree_util.tree_leaves(_params(resumed["state"]))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(straight["state"].rng, resumed["state"].rng)
    # the workdir holds what a user reads
    workdir = tmp_path / "straight"
    assert (workdir / "config.json").exists()
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in row for row in logged) and any("val_seg/dice" in row for row in logged)
    assert straight["best"]["criterion"] == "val_score" and straight["best"]["step"] in (2, 4)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_train_config(num_steps=6)
    train.train_and_evaluate(config, tmp_path, stop_at_step=2)
    config.optim.learning_rate = float("inf")
    with pytest.raises(errors.NonFiniteLossError, match="last good checkpoint \\(step 2\\)"):
        train.train_and_evaluate(config, tmp_path, allow_config_change=["optim.learning_rate"])
    checkpointer = checkpointing.Checkpointer(tmp_path)
    assert checkpointer.latest_step() == 2
    checkpointer.close()


def test_evaluate_and_predict_write_their_files(tmp_path):
    config = tiny_train_config(num_steps=2)
    workdir = tmp_path / "run"
    train.train_and_evaluate(config, workdir)
    # an extra classification folder and segmentation folder at another resolution
    rng = np.random.default_rng(0)
    cls_dir, seg_dir = tmp_path / "cls", tmp_path / "seg"
    for name in ("NORMAL", "PNEUMONIA"):
        (cls_dir / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (50, 70), dtype=np.uint8)).save(cls_dir / name / f"{i}.png")
    (seg_dir / "images").mkdir(parents=True)
    (seg_dir / "masks").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (45, 45), dtype=np.uint8)).save(seg_dir / "images" / f"s{i}.png")
        mask = np.zeros((45, 45), np.uint8)
        mask[10:30, 5:20] = 255
        Image.fromarray(mask).save(seg_dir / "masks" / f"s{i}.png")
    extra = sources.extra_sources(config, {"mine": ("classification", str(cls_dir)),
                                                   "mylungs": ("segmentation", str(seg_dir))})
    results = evaluate.evaluate(config, workdir, extra_sets=extra)
    assert {"val_cls", "val_seg", "test_cls", "test_seg", "mine", "mylungs"} <= set(results)
    assert results["mine"]["n"] == 6 and results["mylungs"]["n"] == 3
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["sets"]["test_cls"]["n"] == 6 and "paper_row" in saved
    table = (workdir / "results.md").read_text()
    assert table.splitlines()[0].startswith("| model | D_l^c/D_l^s | Acc | F1-N | F1-P | DS | HD | SSIM")
    assert len(list((workdir / "examples").glob("*.png"))) >= 4

    rows = predict.predict_files(config, workdir, [str(cls_dir / "NORMAL")], tmp_path / "pred")
    assert len(rows) == 3
    for row in rows:
        assert row["prob_normal"] + row["prob_pneumonia"] == pytest.approx(1.0)
        for kind in ("mask", "saliency", "overlay"):
            png = Image.open(tmp_path / "pred" / f"{row['outputs']}_{kind}.png")
            assert png.size == (32, 32)
    assert (tmp_path / "pred" / "predictions.csv").read_text().count("\n") == 4


def test_wrap_step_wraps_the_step_the_loop_runs(tmp_path):
    """``wrap_step`` (how scripts/bench_train.py times the loop) sees every training step."""
    calls = []

    def wrap(step):
        def counted(state, batch):
            calls.append(int(state.step))
            return step(state, batch)
        return counted

    out = train.train_and_evaluate(tiny_train_config(num_steps=2), tmp_path, wrap_step=wrap)
    assert calls == [0, 1] and int(out["state"].step) == 2


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


# --------------------------------------------------------------------------- resume and stops
def test_resume_after_a_kill_logs_each_step_once(trained, tmp_path):
    workdir = shutil.copytree(trained, tmp_path / "run")
    with open(workdir / "metrics.jsonl", "a") as f:  # logged by a run killed before step 4
        f.write(json.dumps({"step": 3, "train/loss": 99.0}) + "\n")
    train.train_and_evaluate(tiny_train_config(num_steps=3), workdir)
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if r["step"] == 3 and "train/loss" in r]
    assert len(losses) == 1 and losses[0] != 99.0
    changes = (workdir / workdir_lib.CHANGES_FILE).read_text()
    assert '"field": "train.num_steps", "old": 2, "new": 3' in changes


def test_a_resume_with_another_model_is_refused_naming_the_field(trained, tmp_path):
    workdir = shutil.copytree(trained, tmp_path / "run")
    config = tiny_train_config(num_steps=4)
    config.model.widths = (4, 8, 8, 16, 32)
    with pytest.raises(errors.ConfigMismatchError, match="model.widths"):
        train.train_and_evaluate(config, workdir)


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


def test_non_finite_loss_before_any_checkpoint_says_there_is_none(tmp_path):
    config = tiny_train_config(num_steps=2)
    config.optim.learning_rate = float("inf")
    with pytest.raises(errors.NonFiniteLossError, match="no checkpoint was saved before it"):
        train.train_and_evaluate(config, tmp_path)
