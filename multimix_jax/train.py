"""The training loop: sharded state, periodic validation, best + latest checkpoints with the
data iterator, exact resume, non-finite guard, progress and TensorBoard (conventions.md)."""

from __future__ import annotations

import json
import logging
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from multimix_jax import checkpointing, evaluation, input_pipeline, steps, summaries

log = logging.getLogger("multimix_jax")


class NonFiniteLossError(FloatingPointError):
    pass


def total_steps(config, steps_per_epoch: int) -> int:
    if config.train.num_steps > 0:
        return int(config.train.num_steps)
    return max(1, int(math.ceil(config.train.num_epochs * steps_per_epoch)))


@jax.jit
def all_finite(tree) -> jax.Array:
    return jax.tree_util.tree_reduce(
        lambda a, b: a & b, jax.tree_util.tree_map(lambda x: jnp.isfinite(x).all(), tree))


def _format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def _check_batch_divisible(config) -> None:
    n = jax.device_count()
    for name, size in (("data.per_stream_batch", config.data.per_stream_batch),
                       ("data.eval_batch_size", config.data.eval_batch_size)):
        if size % n:
            raise ValueError(f"config.{name}={size} must be a multiple of the {n} devices")


def validate(config, predict_fn, params, val_sets: dict, mesh) -> dict:
    return {name: evaluation.evaluate_set(predict_fn, params, source, task,
                                          config.data.eval_batch_size, config.data.image_size, mesh)
            for name, (task, source) in val_sets.items()}


def _image_summaries(config, predict_fn, params, val_sets: dict, mesh) -> dict:
    if "val_seg" not in val_sets or config.train.num_image_summaries <= 0:
        return {}
    source = val_sets["val_seg"][1]
    count = min(config.train.num_image_summaries, len(source))
    subset = input_pipeline.SubsetSource(source, range(count))
    out = evaluation.run_predictions(predict_fn, params, subset, config.data.eval_batch_size,
                                     config.data.image_size, mesh, saliency_count=count)
    images = np.stack([np.asarray(subset[i]["image"]).reshape(out["mask"].shape[1:])
                       for i in range(count)]) / 255.0
    return {"val/input": images, "val/saliency": summaries.normalize_map(out["saliency"]),
            "val/predicted_mask": out["mask_prob"], "val/true_mask": out["mask"].astype(np.float32)}


def train_and_evaluate(config, workdir: str | pathlib.Path, *, stop_at_step: int | None = None) -> dict:
    """Train (resuming from ``workdir`` if it holds a checkpoint); returns the last validation
    results. ``stop_at_step`` ends the run early after that step's checkpoint (to simulate a
    preemption in tests); the next call resumes exactly."""
    if config.distributed:
        jax.distributed.initialize()
    workdir = pathlib.Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    _check_batch_divisible(config)
    mesh = steps.make_mesh()
    splits = input_pipeline.make_splits(config)
    epoch_steps = input_pipeline.steps_per_epoch(config, splits)
    num_steps = total_steps(config, epoch_steps)
    model, tx, state = steps.setup(config, mesh, epoch_steps)
    schedule = steps.learning_rate_schedule(config.optim, epoch_steps)
    data_iterator = iter(input_pipeline.train_dataset(config, splits, steps.required_streams(config)))
    checkpointer = checkpointing.Checkpointer(workdir, config.train.keep_checkpoints)
    start_step = 0
    if checkpointer.latest_step() is not None:
        state, start_step = checkpointer.restore(checkpointing.abstract_like(state), data_iterator)
        log.info("resumed from %s at step %d", checkpointer.latest.directory, start_step)
    is_chief = jax.process_index() == 0
    if is_chief:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    writer = summaries.MetricWriter(workdir) if is_chief else None
    train_step = steps.jit_train_step(model, tx, config, mesh)
    predict_fn = steps.jit_predict(model, mesh)
    val_sets = evaluation.validation_sources(splits)
    best = checkpointer.best_record()
    log.info("data %s | %d steps/epoch | %d steps | %d device(s) | workdir %s",
             splits.summary(), epoch_steps, num_steps, jax.device_count(), workdir)

    accumulated, pending, last_results = None, None, {}
    train_seconds, interval_start = 0.0, time.perf_counter()  # ETA excludes validation

    def check_finite(collection, at_step):
        values = collection.compute()
        if not all(np.isfinite(float(v)) for v in values.values()):
            last = checkpointer.latest_step()
            raise NonFiniteLossError(
                f"non-finite loss at step {at_step}: "
                f"{ {k: float(v) for k, v in values.items()} }; stopped without saving. The last "
                f"good checkpoint (step {last}) is kept in {workdir / checkpointing.LATEST}: lower "
                f"optim.learning_rate or check the data, then rerun to resume from it.")

    try:
        for step in range(start_step, num_steps):
            batch = steps.shard_batch(next(data_iterator), mesh)
            state, step_metrics = train_step(state, batch)
            if pending is not None:  # the previous step's loss, while this one runs
                check_finite(*pending)
            pending = (step_metrics, step + 1)
            accumulated = step_metrics if accumulated is None else accumulated.merge(step_metrics)
            done = step + 1
            last = done == num_steps
            if done % config.train.log_every_steps == 0 or last:
                check_finite(accumulated, done)
                values = {f"train/{k}": float(v) for k, v in accumulated.compute().items()}
                values["train/learning_rate"] = float(schedule(done - 1))
                train_seconds += time.perf_counter() - interval_start
                interval_start = time.perf_counter()
                per_step = train_seconds / max(1, done - start_step)
                values["train/seconds_per_step"] = per_step
                if writer:
                    writer.write_scalars(done, values)
                log.info("step %d/%d (%.0f%%) | loss %.4f | %s | %.2f s/step | ETA %s", done,
                         num_steps, 100 * done / num_steps, values["train/loss"],
                         " ".join(f"{k[6:]} {v:.3f}" for k, v in values.items()
                                  if k not in ("train/loss", "train/learning_rate",
                                               "train/seconds_per_step")),
                         per_step, _format_seconds(per_step * (num_steps - done)))
                accumulated = None
            if done % config.train.eval_every_steps == 0 or last:
                train_seconds += time.perf_counter() - interval_start
                params = steps.inference_params(state, config)
                last_results = validate(config, predict_fn, params, val_sets, mesh)
                score = evaluation.validation_score(last_results, config.train.best_metric)
                if writer:
                    writer.write_scalars(done, {f"{name}/{k}": v for name, r in last_results.items()
                                                for k, v in r.items() if np.isfinite(v)})
                    writer.write_scalars(done, {"val/score": score})
                    writer.write_images(done, _image_summaries(config, predict_fn, params, val_sets, mesh))
                log.info("validation at step %d: %s | %s %.4f", done, json.dumps(
                    {n: {k: round(float(v), 4) for k, v in r.items()} for n, r in last_results.items()}),
                    config.train.best_metric, score)
                if best is None or score > best["score"]:
                    best = {"score": score, "criterion": config.train.best_metric,
                            "results": last_results}
                    checkpointer.save_best(done, state, best)
                    log.info("new best %s %.4f at step %d", config.train.best_metric, score, done)
                interval_start = time.perf_counter()
            if done % config.train.checkpoint_every_steps == 0 or last or done == stop_at_step:
                check_finite(step_metrics, done)
                pending = None
                if not bool(all_finite(state.params)):
                    raise NonFiniteLossError(
                        f"non-finite parameters after step {done}; not saved. The last good "
                        f"checkpoint (step {checkpointer.latest_step()}) is kept in "
                        f"{workdir / checkpointing.LATEST}.")
                checkpointer.save(done, state, data_iterator)
            if done == stop_at_step:
                log.info("stopping at step %d as asked (resume by rerunning)", done)
                break
    finally:
        if writer:
            writer.close()
        checkpointer.close()
    return {"state": state, "results": last_results, "best": best, "num_steps": num_steps}
