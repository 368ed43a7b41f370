"""Orbax checkpoints of the train state and the Grain data position, in one manager.

``WORKDIR/checkpoints/<step>/`` holds ``state`` (the TrainState), ``data`` (the Grain iterator
position of the next unconsumed batch) and, for a step that was validated, ``metrics``:
``{"val_score", "threshold", "temperature", "flip_tta", "encoded_prior", "score_crossing",
"val"}`` (the decision fitted at that validation and the prediction setting it was fitted
under; docs/multimix.md, Decision threshold and calibration). The manager keeps the latest
``train.keep_checkpoints`` steps and, whatever its age, the best-scoring validated step.
Saves are asynchronous; a step directory only appears once Orbax has finalised it (an
atomic rename), so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import math
import pathlib
import shutil
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from multimix_jax.errors import CheckpointNotFoundError, DamagedCheckpointError, UserError
from multimix_jax.files import json_values
from multimix_jax.names import DEFAULT_THRESHOLD

log = logging.getLogger("multimix_jax")

CHECKPOINTS = "checkpoints"
CHECKSUM = "checksum"  # the item holding the sha256 of the state's arrays
DAMAGED = "damaged_checkpoints"  # where a resume sets aside a damaged checkpoint
CHECKED_PARTS = ("params", "ema_params")  # also checksummed alone: inference restores one


def state_digest(state) -> str | None:
    """sha256 over every array of ``state`` (its tree path, dtype, shape and bytes); None when
    the arrays are not all on this host (multi-host: each host holds a part)."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return None
        array = np.asarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}\n".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _shapes(tree) -> dict[str, tuple]:
    """'params/encoder/.../kernel' -> shape of every leaf (a TrainState and the tree of its
    stored metadata name their leaves alike)."""
    name = lambda key: str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))
    return {"/".join(name(k) for k in path): tuple(getattr(leaf, "shape", None) or ())
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__

def _score(metrics: dict) -> float:
    return float(metrics["val_score"])


def checkpoint_info(val_score: float, val_results: dict, decision: dict) -> dict | None:
    """What a validated checkpoint carries: score, the decision (``validation.Decision.info``:
    threshold, temperature, flip_tta, encoded_prior, score_crossing) and validation results."""
    if not math.isfinite(val_score):
        return None  # nothing to rank by (no validation set)
    return json_values({"val_score": val_score, **decision, "val": val_results})


def no_info() -> dict:
    """The info of a checkpoint saved between validations."""
    return {"val_score": None, "threshold": DEFAULT_THRESHOLD, "temperature": None, "val": {}}


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
        """Starts saving ``state``, the data position and the state's checksum
        (:func:`state_digest`, restored and compared by :meth:`restore`); returns before the
        write ends. ``data_position`` is anything with Grain's iterator ``get_state()``."""
        self.manager.save(step, force=True, metrics=info, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_position),
            **{CHECKSUM: ocp.args.JsonSave({
                "sha256": state_digest(state),
                "parts": {part: state_digest(getattr(state, part)) for part in CHECKED_PARTS
                          if hasattr(state, part)}})}))

    def _fits(self, step: int, abstract_state, partial: bool = False) -> None:
        """A real shape/structure mismatch with the model of this config (of the parts
        ``abstract_state`` names, with ``partial``) is a UserError saying so; metadata that
        cannot be read is damage."""
        try:
            stored = ocp.StandardCheckpointHandler().metadata(self.directory / str(step) / "state")
            have = _shapes(stored)
        except Exception as error:  # noqa: BLE001 - any failure to read is damage
            raise DamagedCheckpointError(step, f"its metadata cannot be read: {_first_line(error)}")
        want = _shapes(abstract_state)
        if partial:
            have = {k: v for k, v in have.items() if k.split("/")[0] in abstract_state}
        if want != have:
            differ = sorted(set(want) ^ set(have)) or sorted(
                k for k in want if want[k] != have[k])
            raise UserError(f"{self.directory}/{step}: the checkpoint does not fit the model of "
                            f"this config (it differs in {differ[0]}"
                            f"{' and others' if len(differ) > 1 else ''}); use the config the "
                            "run was trained with")

    def _restore(self, step: int, abstract_state, data_iterator=None, partial: bool = False):
        """The state (and the iterator in place), verified: structure, checksum (when the
        checkpoint has one) and finite parameters; DamagedCheckpointError otherwise. With
        ``partial``, only the parts (params, ema_params) that ``abstract_state`` names."""
        self._fits(step, abstract_state, partial)
        items = {"state": ocp.args.PyTreeRestore(
            item=abstract_state, partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state))
            if partial else ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        has_checksum = (self.directory / str(step) / CHECKSUM).is_dir()
        if has_checksum:
            items[CHECKSUM] = ocp.args.JsonRestore()
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as error:  # noqa: BLE001 - truncated/flipped files: any reader error
            raise DamagedCheckpointError(step, f"its files cannot be read: {_first_line(error)}")
        state = restored.state
        if has_checksum:
            record = restored[CHECKSUM] or {}
            if partial:
                parts = record.get("parts") or {}
                differs = any(parts.get(k) is not None and parts[k] != state_digest(state[k])
                              for k in abstract_state)
            else:
                differs = (record.get("sha256") is not None
                           and record["sha256"] != state_digest(state))
            if differs:
                raise DamagedCheckpointError(step, "its arrays differ from the checksum written "
                                             "with them")
        else:
            log.warning("%s/%d has no checksum (written by an older version): checking only "
                        "that it is finite", self.directory, step)
        if not bool(_all_finite(state)):
            raise DamagedCheckpointError(step, "it holds non-finite values")
        return state

    def restore(self, abstract_state, data_iterator, step: int | None = None):
        """(state, step) of the latest good checkpoint (or ``step``), restored in place of
        ``abstract_state``, the iterator in place. A damaged latest checkpoint is set aside
        (``WORKDIR/damaged_checkpoints``) with a warning and the one before it is used."""
        self.manager.wait_until_finished()
        steps = [step] if step is not None else sorted(self.steps(), reverse=True)
        for i, candidate in enumerate(steps):
            try:
                return self._restore(candidate, abstract_state, data_iterator), candidate
            except DamagedCheckpointError as error:
                if i + 1 == len(steps):
                    raise DamagedCheckpointError(
                        candidate, error.problem,
                        f"; no good checkpoint is left in {self.directory}: move that folder "
                        "away to start afresh") from None
                aside = self.workdir / DAMAGED / str(candidate)
                log.warning("%s; set aside as %s; resuming from checkpoint %d instead", error,
                            aside, steps[i + 1])
                aside.parent.mkdir(exist_ok=True)
                shutil.rmtree(aside, ignore_errors=True)
                (self.directory / str(candidate)).rename(aside)
                self.manager.reload()
        raise CheckpointNotFoundError(f"{self.directory}: no checkpoint to resume from")

    def restore_state(self, abstract_state, step: int):
        """The parts of the train state that ``abstract_state`` names (a dict such as
        ``{"params": ...}``: evaluation and prediction restore the parameters alone), verified
        as by :meth:`restore` (structure, the parts' checksums, finite values)."""
        return self._restore(step, abstract_state, partial=isinstance(abstract_state, dict))

    def wait(self) -> None:
        """Until every started save is written (the kept steps are then final)."""
        self.manager.wait_until_finished()

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
    'latest' or a kept step number; ``state`` holds the parts ``abstract_state`` names;
    ``info`` is ``{"val_score", "threshold", "temperature", "flip_tta", "encoded_prior",
    "score_crossing", "val"}``.

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
        except DamagedCheckpointError as error:
            others = [s for s in checkpointer.steps() if s != step]
            advice = (f"; use --checkpoint {others[-1]}" if others else
                      "; no other checkpoint is kept: train again")
            raise DamagedCheckpointError(step, error.problem, advice) from None
        return state, step, checkpointer.info(step)
    finally:
        checkpointer.close()
