"""Orbax checkpoints of the train state and the Grain data position, in one manager.

``WORKDIR/checkpoints/<step>/`` holds ``state`` (the TrainState), ``data`` (the Grain iterator
position of the next unconsumed batch) and, for a step that was validated, ``metrics``:
``{"val_score", "cls_threshold", "val"}``. The manager keeps the latest
``train.keep_checkpoints`` steps and, whatever its age, the best-scoring validated step.
Saves are asynchronous; a step directory only appears once Orbax has finalised it (an
atomic rename), so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import logging
import math
import pathlib
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from multimix_jax.errors import CheckpointNotFoundError, UserError
from multimix_jax.names import DEFAULT_THRESHOLD, VAL_CLS

log = logging.getLogger("multimix_jax")

CHECKPOINTS = "checkpoints"

def _score(metrics: dict) -> float:
    return float(metrics["val_score"])


def _jsonable(value: Any) -> Any:
    """Floats (NaN -> None), ints, strings, lists and dicts only: the metrics are JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return value.item() if hasattr(value, "item") else value
    value = float(value)
    return value if math.isfinite(value) else None


def checkpoint_info(val_score: float, val_results: dict) -> dict | None:
    """What a validated checkpoint carries: score, decision threshold and validation results.

    The threshold is the one fitted on the validation set (``fitted_threshold`` of the
    classification results) when there is one, else 0.5."""
    if not math.isfinite(val_score):
        return None  # nothing to rank by (no validation set)
    threshold = val_results.get(VAL_CLS, {}).get("fitted_threshold", DEFAULT_THRESHOLD)
    return _jsonable({"val_score": val_score, "cls_threshold": threshold, "val": val_results})


def no_info() -> dict:
    """The info of a checkpoint saved between validations."""
    return {"val_score": None, "cls_threshold": DEFAULT_THRESHOLD, "val": {}}


def _options(keep: int, read_only: bool) -> ocp.CheckpointManagerOptions:
    policy = ocm.AnyPreservationPolicy([
        ocm.LatestN(n=max(1, keep)),
        ocm.BestN(get_metric_fn=_score, n=1, keep_checkpoints_without_metrics=False)])
    return ocp.CheckpointManagerOptions(
        best_fn=_score, best_mode="max", preservation_policy=None if read_only else policy,
        create=not read_only, read_only=read_only, enable_async_checkpointing=True)


class Checkpointer:
    """The workdir's checkpoints: save (asynchronous), resume, and which step is best."""

    def __init__(self, workdir: str | pathlib.Path, keep: int = 2, *, read_only: bool = False):
        self.workdir = pathlib.Path(workdir).resolve()
        self.manager = ocp.CheckpointManager(self.workdir / CHECKPOINTS,
                                             options=_options(keep, read_only))

    @property
    def directory(self) -> pathlib.Path:
        return self.workdir / CHECKPOINTS

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The best-scoring validated step (None when no kept step was validated)."""
        if not any(self.manager.metrics(s) for s in self.manager.all_steps()):
            return None
        return self.manager.best_step()

    def steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def info(self, step: int) -> dict:
        return self.manager.metrics(step) or no_info()

    def save(self, step: int, state, data_position, info: dict | None = None) -> None:
        """Starts saving ``state`` and the data position; returns before the write ends.

        ``data_position`` is anything with Grain's iterator ``get_state()``."""
        self.manager.save(step, force=True, metrics=info, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_position)))

    def restore(self, abstract_state, data_iterator, step: int | None = None):
        """(state, step) restored in place of ``abstract_state``; the iterator in place."""
        self.manager.wait_until_finished()
        step = self.latest_step() if step is None else step
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(data_iterator)))
        return restored.state, step

    def restore_state(self, abstract_state, step: int):
        """The train state alone (evaluation, prediction)."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state)))
        return restored.state

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(state):
    """ShapeDtypeStructs (with shardings) to restore ``state``'s structure into."""
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)


def parse_which(which: str | int) -> str | int:
    """'best' | 'latest' | a step number (as int); anything else is a one-sentence error."""
    if isinstance(which, int) or str(which) in ("best", "latest"):
        return which
    if str(which).isdigit():
        return int(which)
    raise UserError(f"--checkpoint {which!r}: expected 'best', 'latest' or a step number")


def _missing(workdir: pathlib.Path) -> CheckpointNotFoundError:
    return CheckpointNotFoundError(f"{workdir}: no checkpoint there; train first "
                                   "(--mode train with this --workdir) or check the path")


def _pick_step(checkpointer: Checkpointer, which: str | int) -> int:
    kept = checkpointer.steps()
    if not kept:
        raise _missing(checkpointer.workdir)
    if which == "latest":
        return kept[-1]
    if which == "best":
        best = checkpointer.best_step()
        if best is None:
            log.warning("%s: no validated checkpoint; using the latest (step %d)",
                        checkpointer.workdir, kept[-1])
            return kept[-1]
        return best
    if which not in kept:
        raise CheckpointNotFoundError(f"--checkpoint {which}: step {which} is not kept in "
                                      f"{checkpointer.directory} (kept: {kept})")
    return which


def restore_for_inference(workdir: str | pathlib.Path, abstract_state, which: str | int = "best"):
    """(state, step, info) from ``workdir``: ``which`` is 'best' (the best validation score),
    'latest' or a kept step number; ``info`` is ``{"val_score", "cls_threshold", "val"}``.

    A missing workdir or checkpoint is a one-sentence error; nothing is created."""
    which = parse_which(which)
    workdir = pathlib.Path(workdir).resolve()
    if not (workdir / CHECKPOINTS).is_dir():
        raise _missing(workdir)
    checkpointer = Checkpointer(workdir, read_only=True)
    try:
        step = _pick_step(checkpointer, which)
        try:
            state = checkpointer.restore_state(abstract_state, step)
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"{checkpointer.directory}/{step}: the checkpoint does not fit the "
                            f"model of this config ({type(error).__name__}); evaluate with the "
                            "config the run was trained with") from error
        return state, step, checkpointer.info(step)
    finally:
        checkpointer.close()
