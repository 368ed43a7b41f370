"""Every ``python -m multimix_jax.main`` command of README.md's ```bash blocks runs, at tiny
size, in a temporary folder.

Generic over the README: each command line (``\\`` continuations joined, ``#`` comments
dropped) keeps its own flags and overrides; tiny overrides are appended (32 px, tiny widths,
2 steps, small synthetic sets, or a tiny real-layout data root for configs whose data are
folders; configs whose data are built TFDS datasets train on the embedded data instead); the
input paths it names are created as tiny fixtures (an image for ``*.png|*.jpg``, a folder of
images for a path ending in ``/``, ``{NORMAL,PNEUMONIA}`` for ``--eval_cls_folder``,
``images/`` + ``masks/`` for ``--eval_seg_folder``); absolute paths are moved under the
temporary folder and ``~`` is a temporary HOME. Train commands run before the evaluate and
predict commands of the same workdir (a workdir no README command trains is trained first
with the command's config).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, TINY_WIDTHS
from tests.fixtures_util import lung_rects, write_jpeg, write_png

PREFIX = ["python", "-m", "multimix_jax.main"]
TINY = {"data.image_size": "32", "model.widths": str(TINY_WIDTHS).replace(" ", ""),
        "train.num_steps": "2", "data.per_stream_batch": "2", "data.eval_batch_size": "4",
        "train.log_every_steps": "1", "train.eval_every_steps": "2",
        "train.checkpoint_every_steps": "2", "train.num_image_summaries": "0",
        "eval.num_example_pngs": "1", "data.worker_count": "0", "distributed": "False"}
SMALL_DATA = {"data.val_cls": "4", "data.val_seg": "2"}  # budgets 2 unless the command sets them
REAL_ROOT_DIRS = ("kermany_pneumonia_224/train", "lung_masks_openist")


def readme_commands(text: str) -> list[list[str]]:
    """The argument lists (after ``python -m multimix_jax.main``) of every command line of
    the ```bash blocks that starts with it."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined, current = [], ""
        for line in block.splitlines():
            current += line
            if line.rstrip().endswith("\\"):
                current = current.rstrip()[:-1] + " "
                continue
            joined.append(current)
            current = ""
        joined.append(current)
        for line in joined:
            if line.startswith(" ".join(PREFIX)):
                commands.append(shlex.split(line, comments=True)[len(PREFIX):])
    return commands


def _value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == f"--{flag}" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"--{flag}="):
            return arg.split("=", 1)[1]
    return None


def _overridden(args: list[str]) -> dict[str, str]:
    return dict(a[len("--config."):].split("=", 1) for a in args
                if a.startswith("--config.") and "=" in a)


def _config(config_arg: str):
    import importlib
    module = importlib.import_module("configs." + Path(config_arg.split(":")[0]).stem)
    return module.get_config()


def _config_kind(config_arg: str) -> str:
    return _config(config_arg).data.cls.kind


def _relocate(arg: str, tmp: Path) -> str:
    """Absolute paths (outside the repo) go under ``tmp/abs``; ``NAME=/path`` too."""
    head, sep, tail = arg.rpartition("=") if "=" in arg and not arg.startswith("/") else ("", "", arg)
    if tail.startswith("/") and not tail.startswith(str(REPO)):
        tail = str(tmp / "abs" / tail.lstrip("/"))
    return f"{head}{sep}{tail}"


def _folder_of_images(folder: Path) -> None:
    for i in range(2):
        write_jpeg(folder / f"film{i}.jpeg", 60 + 40 * i)


def _cls_folder(folder: Path, count: int = 3) -> None:
    for i in range(count):
        write_jpeg(folder / "NORMAL" / f"n{i}.jpeg", 40 + 10 * i)
        write_jpeg(folder / "PNEUMONIA" / f"p{i}.jpeg", 160 + 10 * i)


def _seg_folder(folder: Path, count: int = 3) -> None:
    left, right = lung_rects()
    for i in range(count):
        write_png(folder / "images" / f"s{i}.png", np.full(left.shape, 60 + 20 * i, np.uint8))
        write_png(folder / "masks" / f"s{i}.png", np.maximum(left, right))


def _make_inputs(args: list[str], cwd: Path) -> None:
    """Tiny fixtures for the input paths the command names."""
    flag = None
    for arg in args:
        if arg.startswith("--"):
            flag = arg[2:].split("=", 1)[0]
            continue
        path = cwd / arg.split("=", 1)[1] if "=" in arg else cwd / arg
        if flag == "inputs":
            if arg.endswith("/"):
                _folder_of_images(path)
            elif re.search(r"\.(png|jpe?g)$", arg, re.I):
                write_jpeg(path, 90) if re.search(r"jpe?g$", arg, re.I) else write_png(
                    path, np.full((32, 32), 90, np.uint8))
        elif flag == "eval_cls_folder":
            _cls_folder(path)
        elif flag == "eval_seg_folder":
            _seg_folder(path)
        if flag != "inputs":  # the one flag that takes several values
            flag = None


def tiny_command(args: list[str], tmp: Path) -> list[str]:
    """The command with paths moved under ``tmp``, fixtures made and tiny overrides added."""
    args = [_relocate(a, tmp) for a in args]
    config = _value(args, "config")
    args = [str(REPO / a) if a == config else a for a in args]
    args = [a.replace(f"--config={config}", f"--config={REPO / config}") for a in args]
    _make_inputs(args, tmp)
    given = _overridden(args)
    extra = dict(TINY)
    kind = _config_kind(config)
    if kind == "folder":  # a tiny real-layout data root
        root = tmp / "data_root"
        if not root.exists():
            _cls_folder(root / REAL_ROOT_DIRS[0], count=8)
            _seg_folder(root / REAL_ROOT_DIRS[1], count=8)
        extra["data_root"] = str(root)
        extra.update({"data.val_cls": "4", "data.val_seg": "2"})
    else:
        if kind == "tfds":  # built TFDS datasets are not made here: the embedded data
            extra.update({"data.cls.kind": "synthetic", "data.seg.kind": "synthetic"})
            extra.update({f"data.eval_sets.{n}.kind": "synthetic" for n in
                          _eval_set_names(config)})
            extra.update({f"data.eval_sets.{n}.num_examples": "6" for n in
                          _eval_set_names(config)})
        extra.update(SMALL_DATA)
        for short in ("cls", "seg"):
            budget = given.get(f"labels.{short}", "2")
            need = 16 if budget == "all" else int(budget) + 8
            extra[f"data.{short}.num_examples"] = str(need + int(extra[f"data.val_{short}"]))
    for short in ("cls", "seg"):
        if f"labels.{short}" not in given:
            extra[f"labels.{short}"] = "2"
    if kind != "tfds":
        extra.update({f"data.eval_sets.{n}.num_examples": "6" for n in _eval_set_names(config)
                      if _eval_spec_kind(config, n) == "synthetic"})
    forced = {k: v for k, v in extra.items() if k not in given or k in TINY}
    args = [a for a in args if not (a.startswith("--config.") and
                                    a[len("--config."):].split("=", 1)[0] in forced)]
    return args + [f"--config.{k}={v}" for k, v in forced.items()]


def _eval_set_names(config_arg: str) -> list[str]:
    return list(_config(config_arg).data.eval_sets)


def _eval_spec_kind(config_arg: str, name: str) -> str:
    return _config(config_arg).data.eval_sets[name].get("kind", "synthetic")


def _mode(args: list[str]) -> str:
    return _value(args, "mode") or "train"


def ordered(commands: list[list[str]]) -> list[list[str]]:
    """Train commands first; a workdir that only evaluate/predict commands name is trained
    first with the config of its first such command."""
    trains = [c for c in commands if _mode(c) == "train"]
    trained = {_value(c, "workdir") for c in trains}
    extra = []
    for c in commands:
        workdir = _value(c, "workdir")
        if _mode(c) != "train" and workdir not in trained:
            extra.append(["--config", _value(c, "config"), "--workdir", workdir])
            trained.add(workdir)
    return trains + extra + [c for c in commands if _mode(c) != "train"]


def _run(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), HOME=str(tmp / "home"))
    env.pop("MULTIMIX_DATA_ROOT", None)
    return subprocess.run([sys.executable, "-m", "multimix_jax.main", *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=900)


README_COMMANDS = readme_commands((REPO / "README.md").read_text())


def test_the_readme_commands_are_found_and_get_their_fixtures(tmp_path):
    assert README_COMMANDS, "no python -m multimix_jax.main command in README.md"
    for args in ordered(README_COMMANDS):
        assert _value(args, "config") and _value(args, "workdir"), args
        command = tiny_command(args, tmp_path)
        assert "--config.data.image_size=32" in command
        if _mode(args) == "predict":
            assert _value(args, "inputs"), args
    assert readme_commands("```bash\npython -m multimix_jax.main --config c.py \\\n"
                           "    --workdir w --mode predict --inputs a.png b/  # note\n```\n") \
        == [["--config", "c.py", "--workdir", "w", "--mode", "predict", "--inputs", "a.png",
             "b/"]]


@pytest.mark.slow
def test_every_readme_command_runs_at_tiny_size(tmp_path):
    (tmp_path / "home").mkdir()
    for args in ordered(README_COMMANDS):
        command = tiny_command(args, tmp_path)
        done = _run(command, tmp_path)
        assert done.returncode == 0, (f"python -m multimix_jax.main {shlex.join(args)} failed:\n"
                                      + done.stderr[-3000:])
