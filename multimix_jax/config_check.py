"""Every config value checked against what it may be, before any data is loaded or any step
runs: one sentence per bad value naming the override (``--config.FIELD=VALUE``) and what
would work. Called by ``main`` and by ``train.train_and_evaluate`` / ``evaluate.evaluate``.

Paths that come from the config may start with ``~``: :func:`expand_user_paths` expands them
(``--config.data_dir=~/tfds`` is not expanded by the shell).
"""

from __future__ import annotations

import math
import os
import pathlib

from multimix_jax import losses
from multimix_jax.errors import UserError
from multimix_jax.names import (DATA_KINDS, SHIFTED_SETS, TASKS, THRESHOLD_RULES, VAL_CLS,
                                VAL_SEG)

# The encoder pools five times; the decoder meets the skips of the first four at 1/16 of the
# image, and the classifier averages the fifth pool's output: a multiple of 16, at least 32.
IMAGE_SIZE_STEP, IMAGE_SIZE_MIN = 16, 32
NUM_WIDTHS = 5
DTYPES = ("float32", "bfloat16")
SCORES = ("val_score", "shifted_score")  # evaluation.validation_score's named criteria
PATH_FIELDS = ("path", "data_dir")  # in every data spec (data.cls, data.seg, data.eval_sets.*)


def _bad(name: str, value, expected: str) -> UserError:
    return UserError(f"--config.{name}={value}: expected {expected}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _count(config, name: str, minimum: int = 1) -> None:
    value = _get(config, name)
    if not (_is_int(value) and value >= minimum):
        raise _bad(name, value, f"a whole number >= {minimum}")


def _get(config, name: str):
    value = config
    for part in name.split("."):
        value = value[part]
    return value


def _budget_pool(config, short: str) -> int | None:
    """Examples left for training of an embedded (synthetic) source, else None (unknown
    until the data is read)."""
    spec, val = config.data[short], config.data[f"val_{short}"]
    if spec.get("kind", "synthetic") != "synthetic" or not _is_int(val):
        return None
    return int(spec.get("num_examples", 0)) - val


def _check_budgets(config) -> None:
    """Budgets and hold-outs: a positive count or the words the data layer knows; a budget of
    an embedded source no larger than what is left after the hold-out."""
    for name in ("labels.cls", "labels.seg", "data.val_cls", "data.val_seg"):
        group, field = name.split(".")
        value = config[group][field]
        word = value == "all" if group == "labels" else str(value).startswith("split:")
        if not ((_is_int(value) and value > 0) or word):
            what = "'all'" if group == "labels" else "'split:NAME'"
            raise UserError(f"--config.{name}={value}: expected a positive number or {what}")
    for short, task in (("cls", TASKS[0]), ("seg", TASKS[1])):
        pool, budget = _budget_pool(config, short), config.labels[short]
        if config.tasks.get(task) and pool is not None and _is_int(budget) and budget > pool:
            raise UserError(f"--config.labels.{short}={budget}: more than the {pool} training "
                            f"examples of data.{short} (num_examples minus data.val_{short}); "
                            "give at most that many or 'all'")


def _check_model(config) -> None:
    size = config.data.image_size
    if not (_is_int(size) and size >= IMAGE_SIZE_MIN and size % IMAGE_SIZE_STEP == 0):
        raise _bad("data.image_size", size, f"a multiple of {IMAGE_SIZE_STEP}, at least "
                   f"{IMAGE_SIZE_MIN} (the model pools the image five times), e.g. 64 or 256")
    widths = config.model.widths
    if (isinstance(widths, str) or not hasattr(widths, "__len__") or len(widths) != NUM_WIDTHS
            or not all(_is_int(w) and w > 0 for w in widths)):
        raise _bad("model.widths", widths, f"{NUM_WIDTHS} positive whole numbers, e.g. "
                   "'(16,32,64,128,256)'")
    if config.model.dtype not in DTYPES:
        raise _bad("model.dtype", config.model.dtype, f"one of {', '.join(DTYPES)}")
    rate = config.model.dropout_rate
    if not (_is_number(rate) and 0 <= rate < 1):
        raise _bad("model.dropout_rate", rate, "a number in [0, 1)")


def _check_data(config) -> None:
    for name in ("data.per_stream_batch", "data.eval_batch_size"):
        _count(config, name)
    for name in ("data.worker_count", "data.worker_buffer_size"):
        _count(config, name, minimum=0)
    specs = {f"data.{s}": config.data[s] for s in ("cls", "seg")}
    specs.update({f"data.eval_sets.{n}": spec for n, spec in config.data.eval_sets.items()})
    for name, spec in specs.items():
        kind = spec.get("kind", "synthetic")
        if kind not in DATA_KINDS:
            raise _bad(f"{name}.kind", kind, f"one of {', '.join(DATA_KINDS)}")
        if name.startswith("data.eval_sets.") and spec.get("task") not in TASKS:
            raise _bad(f"{name}.task", spec.get("task"), f"one of {', '.join(TASKS)}")
    if not any(config.tasks.get(t) for t in TASKS):
        raise UserError("--config.tasks: enable classification, segmentation or both")


def validated_sets(config) -> set[str]:
    """The validation sets a run of ``config`` validates on (names.VAL_*)."""
    sets = set()
    if config.tasks.get(TASKS[0]):
        sets.add(VAL_CLS)
    if config.tasks.get(TASKS[1]):
        sets.add(VAL_SEG)
    if config.eval.shifted_validation:
        sets |= {s for s in SHIFTED_SETS if s.startswith(tuple(sets))}
    return sets


def _check_training(config) -> None:
    train = config.train
    if not _is_int(train.num_steps) or (train.num_steps <= 0 and not (
            _is_number(train.num_epochs) and train.num_epochs > 0)):
        raise _bad("train.num_steps", train.num_steps,
                   "a positive whole number (or -1 with a positive train.num_epochs)")
    for name in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps",
                 "num_image_summaries"):
        _count(config, f"train.{name}", minimum=0)
    _count(config, "train.keep_checkpoints")
    if not _is_number(train.divergence_factor):
        raise _bad("train.divergence_factor", train.divergence_factor, "a number (<= 0: off)")
    metric, sets = train.best_metric, validated_sets(config)
    name, sep, key = str(metric).partition("/")
    if metric not in SCORES and not (sep and name in sets and key):
        raise _bad("train.best_metric", metric, f"one of {', '.join(SCORES)} or SET/METRIC with "
                   f"SET a set this run validates ({', '.join(sorted(sets))}), e.g. "
                   "val_cls/accuracy")
    if config.eval.threshold not in THRESHOLD_RULES:
        raise _bad("eval.threshold", config.eval.threshold, f"one of {', '.join(THRESHOLD_RULES)}")
    if config.loss.kl not in losses.KL_MODES:
        raise _bad("loss.kl", config.loss.kl, f"one of {', '.join(losses.KL_MODES)}")
    gamma = config.loss.get("seg_consistency_weight", 0.0)
    if not (_is_number(gamma) and gamma >= 0):
        raise _bad("loss.seg_consistency_weight", gamma, "a number >= 0 (0: off)")
    optim = config.optim
    if not (_is_number(optim.learning_rate) and optim.learning_rate > 0):
        raise _bad("optim.learning_rate", optim.learning_rate, "a positive number")
    for name in ("b1", "b2", "ema_decay"):
        if not (_is_number(optim[name]) and 0 <= optim[name] <= 1):
            raise _bad(f"optim.{name}", optim[name], "a number in [0, 1]")
    if not (isinstance(optim.lr_decay_steps, int) and optim.lr_decay_steps >= 0):
        raise _bad("optim.lr_decay_steps", optim.lr_decay_steps, "a whole number >= 0")


def check_config_values(config) -> None:
    """Stops with one sentence at the first config value outside what it may be."""
    _check_budgets(config)
    _check_model(config)
    _check_data(config)
    _check_training(config)


def check_batch_divisible(config, device_count: int) -> None:
    """The training and evaluation batches split evenly over the ``device_count`` devices."""
    for name, size in (("data.per_stream_batch", config.data.per_stream_batch),
                       ("data.eval_batch_size", config.data.eval_batch_size)):
        if size % device_count:
            raise UserError(
                f"--config.{name}={size}: must be a multiple of the {device_count} devices")


def _expanded(value):
    if isinstance(value, str) and value.startswith("~"):
        return os.path.expanduser(value)
    return value


def expand_user_paths(config) -> None:
    """``~`` expanded in every path field: ``data_root``, ``data_dir`` and each data spec's
    ``path`` / ``data_dir`` (data.cls, data.seg, data.eval_sets.*). Linked fields (one
    FieldReference) follow the top-level one."""
    for field in ("data_root", "data_dir"):
        if field in config and _expanded(config[field]) != config[field]:
            config[field] = _expanded(config[field])
    for spec in [config.data.cls, config.data.seg, *config.data.eval_sets.values()]:
        for field in PATH_FIELDS:
            if field in spec and _expanded(spec[field]) != spec[field]:
                spec[field] = _expanded(spec[field])


def expand_path(value: str | None) -> str | None:
    """A path from a flag with ``~`` expanded (``--workdir=~/runs`` reaches us unexpanded)."""
    return None if value is None else os.path.expanduser(value)


def check_writable(folder: str | os.PathLike, flag: str) -> None:
    """``folder`` (made if missing) takes a file: else one sentence naming ``flag``."""
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder}: is a file, not a folder; give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UserError(f"{flag} {folder}: cannot write there ({error.strerror or error}); "
                        "give a folder you can write to") from None
