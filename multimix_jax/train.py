"""The training loop: one flat loop over steps, one "is it time" predicate, and small helpers
that log, validate and checkpoint.

A step takes a batch that is already on the devices (``device_batches`` shards the next ones
while the current step runs) and dispatches the jitted train step; the host waits for the devices
only at log steps (metrics: finite? diverging?), validations and checkpoints. Checkpoints hold
the state and the data position and are written asynchronously; a resumed run continues
exactly (bit for bit) where the last checkpoint left off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import pathlib
import time
from typing import Callable, Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np

from multimix_jax import (checkpointing, config_check, evaluation, finetune, input_pipeline, names,
                          sharding, sources, steps, summaries, validation)
from multimix_jax import state as train_state
from multimix_jax import workdir as workdir_lib
from multimix_jax.errors import DivergenceError, NonFiniteLossError
from multimix_jax.plan import Plan

log = logging.getLogger("multimix_jax")


def itstime(step: int, every: int, total: int, *, first: int | None = None) -> bool:
    """Every ``every`` steps, at the last step, and at ``first`` if given."""
    return step == total or step == first or (every > 0 and step % every == 0)


@jax.jit
def all_finite(tree) -> jax.Array:
    return jax.tree_util.tree_reduce(
        lambda a, b: a & b, jax.tree_util.tree_map(lambda x: jnp.isfinite(x).all(), tree))


def _format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def device_batches(data: grain.IterDataset, mesh) -> grain.DatasetIterator:
    """The training batches of ``data`` (``input_pipeline.train_dataset``), sharded onto the
    devices ahead of the step that takes them: Grain's thread prefetch keeps each batch with
    the iterator state after it, so the state a checkpoint saves is the position of the next
    batch no step has taken."""
    placed = data.map(functools.partial(sharding.shard_batch, mesh=mesh))
    return iter(grain.experimental.ThreadPrefetchIterDataset(placed, prefetch_buffer_size=2))


@dataclasses.dataclass
class _Clock:
    """Training seconds (validation and checkpoints excluded) for the ETA."""

    start_step: int
    seconds: float = 0.0
    since: float = dataclasses.field(default_factory=time.perf_counter)

    def pause(self) -> None:
        self.seconds += time.perf_counter() - self.since

    def resume(self) -> None:
        self.since = time.perf_counter()

    def per_step(self, step: int) -> float:
        return self.seconds / max(1, step - self.start_step)


@dataclasses.dataclass
class _LossWatch:
    """Divergence: a log interval's mean loss above ``factor`` x the lowest interval mean so
    far (the first logged step is an interval of its own: the reference)."""

    factor: float
    lowest: float = math.inf
    clean_step: int = 0  # the last step whose check passed: checkpoints up to it are good

    def problem(self, loss: float, step: int) -> str | None:
        """The divergence message, without counting ``loss`` towards the lowest."""
        if self.factor > 0 and loss > self.factor * self.lowest:
            return (f"training diverged at step {step}: the mean loss {loss:.4g} of the last "
                    f"log interval is over {self.factor:g} x the lowest so far "
                    f"({self.lowest:.4g}; train.divergence_factor)")
        return None

    def check(self, loss: float, step: int) -> str | None:
        problem = self.problem(loss, step)
        if problem is None:
            self.lowest = min(self.lowest, loss)
        return problem


def _last_good(checkpointer: checkpointing.Checkpointer, clean_step: int | None = None) -> str:
    """The latest kept checkpoint written no later than the last clean check."""
    checkpointer.wait()
    kept = [s for s in checkpointer.steps() if clean_step is None or s <= clean_step]
    step = kept[-1] if kept else None
    if step is None:
        return "no checkpoint was saved before it, so a rerun starts from scratch"
    return (f"the last good checkpoint (step {step}) is kept in {checkpointer.directory}; "
            f"a rerun resumes from it")


def _advice(config) -> str:
    return (f"lower optim.learning_rate (now {config.optim.learning_rate:g}; pass "
            "--allow_config_change=optim.learning_rate to resume with it) or check the data")


def log_train_metrics(config, accumulated, step: int, num_steps: int, schedule, clock: _Clock,
                      watch: _LossWatch, checkpointer, writer) -> None:
    """Fetches the interval's mean metrics (the only per-interval host sync), stops on a
    non-finite or diverging loss, then logs them with the ETA."""
    computed = {k: float(v) for k, v in accumulated.compute().items()}
    if not all(np.isfinite(v) for v in computed.values()):
        raise NonFiniteLossError(f"non-finite loss at step {step}: {computed}; stopped without "
                                 f"saving; {_last_good(checkpointer, watch.clean_step)}: "
                                 f"{_advice(config)}")
    problem = watch.check(computed["loss"], step)
    if problem:
        raise DivergenceError(f"{problem}; stopped without saving; "
                              f"{_last_good(checkpointer, watch.clean_step)}: {_advice(config)}")
    watch.clean_step = step
    clock.pause()
    clock.resume()
    per_step = clock.per_step(step)
    values = {f"train/{k}": v for k, v in computed.items()}
    values["train/learning_rate"] = float(schedule(step - 1))
    values["train/seconds_per_step"] = per_step
    if writer:
        writer.write_scalars(step, values)
    log.info("step %d/%d (%.0f%%) | loss %.4f | %s | %.2f s/step | ETA %s", step, num_steps,
             100 * step / num_steps, computed["loss"],
             " ".join(f"{k} {v:.3f}" for k, v in computed.items() if k != "loss"),
             per_step, _format_seconds(per_step * (num_steps - step)))


def _image_summaries(count: int, predict_set, val_sets: dict) -> dict:
    """Input, saliency, predicted and true mask of the first ``count`` validation
    segmentation films (``train.num_image_summaries``). Every process runs the (global,
    jitted) prediction; only the chief writes the result."""
    if names.VAL_SEG not in val_sets or count <= 0:
        return {}
    source = val_sets[names.VAL_SEG][1]
    count = min(count, len(source))
    subset = sources.SubsetSource(source, range(count))
    out = predict_set(subset, saliency_count=count)
    images = np.stack([np.asarray(subset[i]["image"]).reshape(out["mask"].shape[1:])
                       for i in range(count)]) / 255.0
    return {"val/input": images, "val/saliency": summaries.normalize_map(out["saliency"]),
            "val/predicted_mask": out["mask_prob"], "val/true_mask": out["mask"].astype(np.float32)}


def validate_and_log(config, predict_fn, state, val_sets: dict, mesh, step: int,
                     writer) -> tuple[dict, float, validation.Decision]:
    """(validation results, score, decision), written to TensorBoard / metrics.jsonl and the
    log. Every process runs the same predictions (multi-host); the chief alone writes."""
    params = train_state.inference_params(state, config)
    predict_set = evaluation.predictor(predict_fn, params, config.data, mesh)
    results, decision = validation.validate(config.eval, predict_set, val_sets)
    score = validation.selection_score(results, config.train.best_metric) if results else math.nan
    images = _image_summaries(config.train.num_image_summaries, predict_set, val_sets)
    if writer:
        writer.write_scalars(step, {f"{name}/{k}": v for name, r in results.items()
                                    for k, v in r.items() if np.isfinite(v)})
        if math.isfinite(score):
            writer.write_scalars(step, {"val/score": score})
        writer.write_images(step, images)
    log.info("validation at step %d: %s | %s %.4f | threshold %.4f%s", step, json.dumps(
        {n: {k: round(float(v), 4) for k, v in r.items()} for n, r in results.items()}),
        config.train.best_metric, score, decision.threshold,
        "" if decision.temperature is None else f" | temperature {decision.temperature:.4f}")
    return results, score, decision


def check_healthy(config, state, unlogged, watch: _LossWatch, step: int, checkpointer) -> None:
    """Before every validation and save: the state is finite and the metrics since the last
    log are finite and not diverging; else stop, naming the last checkpoint written no later
    than the last clean check. So nothing non-finite or diverged is validated or saved."""
    finite = bool(all_finite((state.params, state.ema_params, state.opt_state)))
    loss = None
    if unlogged is not None:
        values = {k: float(v) for k, v in unlogged.compute().items()}
        finite &= all(np.isfinite(v) for v in values.values())
        loss = values.get("loss")
    if not finite:
        raise NonFiniteLossError(f"non-finite loss or parameters at step {step}; not saved; "
                                 f"{_last_good(checkpointer, watch.clean_step)}: "
                                 f"{_advice(config)}")
    problem = watch.problem(loss, step) if loss is not None else None
    if problem:
        raise DivergenceError(f"{problem}; not saved; "
                              f"{_last_good(checkpointer, watch.clean_step)}: {_advice(config)}")
    watch.clean_step = step


def checkpoint(config, checkpointer, state, batches: grain.DatasetIterator, step: int, unlogged,
               info: dict | None, watch: _LossWatch) -> None:
    """Starts an asynchronous save of a state that passed :func:`check_healthy`."""
    check_healthy(config, state, unlogged, watch, step, checkpointer)
    checkpointer.save(step, state, batches, info)


def _best_so_far(checkpointer, criterion: str) -> dict | None:
    step = checkpointer.best_step()
    if step is None:
        return None
    info = checkpointer.info(step)
    return {"step": step, "score": info["val_score"], "criterion": criterion,
            "results": info["val"]}


def train_and_evaluate(config, workdir: str | pathlib.Path, *, stop_at_step: int | None = None,
                       allow_config_change: Sequence[str] = (),
                       wrap_step: Callable[[Callable], Callable] | None = None) -> dict:
    """Train (resuming from ``workdir`` if it holds a checkpoint); returns the state, the last
    validation results and the best checkpoint's record. ``stop_at_step`` ends the run early
    after that step's checkpoint (a preemption in tests); the next call resumes exactly.
    ``allow_config_change``: recorded config fields a resume may change (or 'all').
    ``wrap_step``: applied to the jitted step before the loop (a benchmark times it)."""
    config_check.check_config_values(config)
    if config.distributed:
        jax.distributed.initialize()
    config_check.check_batch_divisible(config, jax.device_count())
    workdir = pathlib.Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    is_chief = jax.process_index() == 0
    with contextlib.ExitStack() as stack:
        if is_chief:
            stack.enter_context(workdir_lib.training_lock(workdir))
        checkpointer = stack.enter_context(contextlib.closing(
            checkpointing.Checkpointer(workdir, config.train.keep_checkpoints)))
        resuming = checkpointer.latest_step() is not None
        # A resume's accepted config changes (refused ones stop here, before any data is read).
        accepted = workdir_lib.check_config(config, workdir,
                                            allow=allow_config_change) if resuming else []
        mesh = sharding.make_mesh()
        model, params, rng = train_state.initial_model(config)
        params = finetune.initial_params(config, params, fresh=not resuming)
        plan = Plan.from_config(config)

        splits = sources.make_splits(config)
        workdir_lib.check_splits(workdir, splits.fingerprints(), allow=allow_config_change,
                                 write=is_chief, compare=resuming)
        batches = device_batches(input_pipeline.train_dataset(config, splits, plan.streams), mesh)
        stack.callback(batches.close)
        epoch_steps = input_pipeline.steps_per_epoch(config, splits)
        num_steps = train_state.total_steps(config.train, epoch_steps)
        schedule, tx, state = train_state.create_train_state(config, mesh, epoch_steps, params,
                                                             rng)
        start = 0
        if resuming:
            state, start = checkpointer.restore(checkpointing.abstract_like(state), batches)
            log.info("resumed from %s at step %d", checkpointer.directory, start)
        if is_chief:
            workdir_lib.record_config(config, workdir, accepted, start)
        train_step = steps.jit_train_step(model, tx, config, mesh)
        if wrap_step is not None:
            train_step = wrap_step(train_step)
        predict_fn = steps.jit_predict(model, mesh, config.eval.flip_tta)
        val_sets = validation.validation_sets(splits, config.eval.shifted_validation)
        best = _best_so_far(checkpointer, config.train.best_metric)
        log.info("data %s | streams %s | %d steps/epoch | %d steps | %d device(s) | workdir %s",
                 splits.summary(), ", ".join(plan.streams), epoch_steps, num_steps,
                 jax.device_count(), workdir)
        clock, watch = _Clock(start), _LossWatch(config.train.divergence_factor,
                                                 clean_step=start)
        every = config.train
        writer = summaries.MetricWriter(workdir, start) if is_chief else None
        if writer:
            stack.callback(writer.close)
        accumulated, results = None, {}
        for step in range(start + 1, num_steps + 1):
            state, step_metrics = train_step(state, next(batches))
            accumulated = step_metrics if accumulated is None else accumulated.merge(step_metrics)
            if itstime(step, every.log_every_steps, num_steps, first=start + 1):
                log_train_metrics(config, accumulated, step, num_steps, schedule, clock, watch,
                                  checkpointer, writer)
                accumulated = None
            info = None
            if itstime(step, every.eval_every_steps, num_steps):
                clock.pause()
                check_healthy(config, state, accumulated, watch, step, checkpointer)
                results, score, decision = validate_and_log(config, predict_fn, state, val_sets,
                                                            mesh, step, writer)
                info = checkpointing.checkpoint_info(score, results,
                                                     decision.info(config.eval.flip_tta))
                if info and (best is None or score > best["score"]):
                    best = {"step": step, "score": score, "criterion": config.train.best_metric,
                            "results": results}
                    log.info("new best %s %.4f at step %d", best["criterion"], score, step)
                clock.resume()
            if info or step == stop_at_step or itstime(step, every.checkpoint_every_steps,
                                                       num_steps):
                checkpoint(config, checkpointer, state, batches, step, accumulated, info, watch)
            if step == stop_at_step:
                log.info("stopping at step %d as asked (resume by rerunning)", step)
                break
        return {"state": state, "results": results, "best": best, "num_steps": num_steps}
