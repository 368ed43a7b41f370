"""main: several values per --inputs, one line for every bad input before the first step
(typos with a clean 'did you mean', config-file errors, a field or file that does not exist,
a bad image in an evaluation folder, clashing set names, a bad --checkpoint, an unwritable
output, a missing config.json, evaluate at another image size)."""

import os
import subprocess
import sys

import pytest

from multimix_jax import main as main_lib
from multimix_jax import workdir as workdir_lib
from tests.conftest import REPO
from tests.fixtures_util import write_jpeg


def test_every_value_after_inputs_up_to_the_next_flag_is_an_input():
    argv = ["prog", "--mode", "predict", "--inputs", "a.png", "b/", "--output", "o",
            "--inputs=c.png", "d.png", "--workdir", "w"]
    assert main_lib.gather_inputs(argv) == [
        "prog", "--mode", "predict", "--inputs=a.png", "--inputs=b/", "--output", "o",
        "--inputs=c.png", "--inputs=d.png", "--workdir", "w"]


def test_a_typo_suggests_the_dotted_field(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog", "--config.data.imagesize=32"])
    error = KeyError('\'imagesize\'\nDid you mean "image_size" instead of "imagesize"?')
    assert main_lib._unknown_field(error) == (
        "--config.data.imagesize=32: the config has no field 'imagesize'; "
        "did you mean data.image_size?")


def _cli(*args, cwd=REPO):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "multimix_jax.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    return done.returncode, done.stderr.strip().splitlines()


def _one_line_error(code, stderr, expected):
    assert code != 0 and not any("Traceback" in line for line in stderr), stderr
    assert stderr and stderr[-1].startswith("error: ") and expected in stderr[-1], stderr


@pytest.mark.parametrize("config, args, expected", [
    ("configs/default.py", ["--config.data.imagesize=32"], "did you mean data.image_size?"),
    ("configs/default.py:nope", [], "unknown variant 'nope'"),
    ("SYNTAX", [], "syntax error at line 1"),
    ("configs/default.py", ["--config.train.best_metric=accuracy"], "best_metric=accuracy"),
    ("configs/default.py", ["--eval_cls_folder", "test_cls=."], "'test_cls' is a set of the"),
    ("configs/default.py", ["--eval_cls_folder", "x=.", "--eval_seg_folder", "x=SEG"],
     "'x' is given twice"),
    ("configs/default.py", ["--eval_cls_folder", "x=BAD"], "zero.png"),
    ("configs/default.py", ["--workdir", "/proc/nope"], "--workdir /proc/nope: cannot write"),
])
def test_bad_input_stops_in_one_line_before_training(tmp_path, config, args, expected):
    if config == "SYNTAX":
        config = str(tmp_path / "bad.py")
        (tmp_path / "bad.py").write_text("x = (\n")
    (tmp_path / "seg" / "images").mkdir(parents=True)
    (tmp_path / "seg" / "masks").mkdir()
    for label in ("NORMAL", "PNEUMONIA"):
        write_jpeg(tmp_path / "bad" / label / "fine.jpeg", 100)
    (tmp_path / "bad" / "NORMAL" / "zero.png").write_bytes(b"")
    args = [a.replace("SEG", str(tmp_path / "seg")).replace("BAD", str(tmp_path / "bad"))
            for a in args]
    workdir = ["--workdir", str(tmp_path / "run")] if "--workdir" not in args else []
    code, stderr = _cli("--config", config, *workdir, *args)
    _one_line_error(code, stderr, expected)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_evaluate_and_predict_refuse_a_workdir_without_its_config(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    code, stderr = _cli("--config", "configs/default.py", "--workdir", str(tmp_path / "run"),
                        "--mode", "evaluate")
    _one_line_error(code, stderr, "config.json is missing")


def test_predict_into_a_file_is_refused_before_predicting(tmp_path):
    from configs import default
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    workdir_lib.write_recorded(tmp_path / "run", default.get_config())
    write_jpeg(tmp_path / "a.jpeg", 10)
    (tmp_path / "taken").write_text("x")
    code, stderr = _cli("--config", "configs/default.py", "--workdir", str(tmp_path / "run"),
                        "--mode", "predict", "--inputs", str(tmp_path / "a.jpeg"),
                        str(tmp_path), "--output", str(tmp_path / "taken"))
    _one_line_error(code, stderr, "taken: is a file, not a folder")


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
    _one_line_error(code, stderr, expected)
    assert stderr[-1].startswith("error: " + expected), stderr
    assert not workdir.exists()


def test_evaluate_at_another_image_size_is_refused(trained, tmp_path):
    """... before any extra folder is read (this one holds an unreadable image)."""
    config_file = tmp_path / "tiny.py"
    config_file.write_text("from tests.conftest import tiny_train_config\n\n\n"
                           "def get_config():\n    return tiny_train_config(num_steps=2)\n")
    for label in ("NORMAL", "PNEUMONIA"):
        write_jpeg(tmp_path / "bad" / label / "fine.jpeg", 100)
    (tmp_path / "bad" / "NORMAL" / "zero.png").write_bytes(b"")
    code, stderr = _cli("--config", str(config_file), "--workdir", str(trained), "--mode",
                        "evaluate", "--config.data.image_size=64",
                        "--eval_cls_folder", f"mine={tmp_path / 'bad'}")
    assert code != 0 and "data.image_size 32 -> 64" in stderr[-1], stderr
    assert not (trained / "results.json").exists()
