"""Orbax checkpoints of the train state and the Grain iterator (conventions.md, Training loop).

Two managers in the workdir: ``checkpoints/`` keeps the latest ``keep`` states together with
the data iterator (what a resumed run needs), ``best/`` keeps the single best state by the
configured validation criterion (what evaluation and prediction load by default).
"""

from __future__ import annotations

import json
import pathlib

import grain
import jax
import orbax.checkpoint as ocp

LATEST, BEST = "checkpoints", "best"


class Checkpointer:
    def __init__(self, workdir: str | pathlib.Path, keep: int = 2):
        self.workdir = pathlib.Path(workdir).resolve()
        self.latest = ocp.CheckpointManager(
            self.workdir / LATEST, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
        self.best = ocp.CheckpointManager(
            self.workdir / BEST, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))
        self.best_record_path = self.workdir / BEST / "best.json"

    # ----------------------------------------------------------------- latest + data
    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def save(self, step: int, state, data_iterator) -> None:
        self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator)))
        self.latest.wait_until_finished()

    def restore(self, abstract_state, data_iterator, step: int | None = None):
        """Restores (state, step) in place of ``abstract_state``; the iterator in place."""
        step = self.latest.latest_step() if step is None else step
        restored = self.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(data_iterator)))
        return restored.state, step

    # ----------------------------------------------------------------- best
    def best_record(self) -> dict | None:
        if self.best_record_path.exists():
            return json.loads(self.best_record_path.read_text())
        return None

    def save_best(self, step: int, state, record: dict) -> None:
        self.best.save(step, args=ocp.args.StandardSave(state))
        self.best.wait_until_finished()
        tmp = self.best_record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(record, step=step), indent=2))
        tmp.replace(self.best_record_path)

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def abstract_like(state):
    """ShapeDtypeStructs (with shardings) to restore ``state``'s structure into."""
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)


def restore_state_for_inference(workdir: str | pathlib.Path, abstract_state, which: str = "best"):
    """(state, step) from ``workdir``: 'best', 'latest', or a step number of the latest set."""
    workdir = pathlib.Path(workdir).resolve()
    if which == "best" and not (workdir / BEST).exists():
        which = "latest"
    if which == "best":
        manager = ocp.CheckpointManager(workdir / BEST)
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"{workdir / BEST}: no best checkpoint (train first)")
        return manager.restore(step, args=ocp.args.StandardRestore(abstract_state)), step
    manager = ocp.CheckpointManager(workdir / LATEST)
    step = manager.latest_step() if which == "latest" else int(which)
    if step is None:
        raise FileNotFoundError(f"{workdir / LATEST}: no checkpoint to load (train first)")
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored.state, step
