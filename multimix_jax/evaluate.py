"""Evaluate a checkpoint on every evaluation set of the config and on any extra folder; write
results.json, results.md and example PNGs (docs/multimix.md, Metrics)."""

from __future__ import annotations

import logging
import pathlib
from typing import Callable, Mapping, Sequence

from multimix_jax import evaluation, input_pipeline, names, pictures, steps, validation

log = logging.getLogger("multimix_jax")


def label_budgets(config) -> str:
    """'cls/seg' label budgets as in the paper's table; '-' for a task switched off."""
    return "/".join(str(n) if config.tasks.get(task) else "-"
                    for n, task in ((config.labels.cls, names.CLASSIFICATION),
                                    (config.labels.seg, names.SEGMENTATION)))


def evaluate_one(config, predict_fn: Callable, loaded: evaluation.Loaded, name: str, task: str,
                 source, output_dir: pathlib.Path, keep: dict | None = None) -> dict:
    """One set, predicted once: its metrics (classification of the calibrated P(pneumonia)
    at the checkpoint's threshold) and, for a segmentation set,
    ``config.eval.num_example_pngs`` example PNGs."""
    count = config.eval.num_example_pngs if task == names.SEGMENTATION else 0
    predictions = evaluation.run_predictions(
        predict_fn, loaded.params, source, config.data.eval_batch_size, config.data.image_size,
        loaded.mesh, saliency_count=count, temperature=loaded.temperature)
    result = evaluation.set_metrics(task, predictions, loaded.threshold)
    if keep is not None and task == names.CLASSIFICATION:
        keep[name] = {key: predictions[key] for key in ("label", "prob_pneumonia_uncalibrated")}
    if count > 0:
        pictures.write_example_pngs(output_dir / "examples", source, predictions, count, name)
    log.info("%s (%s, n=%d): %s", name, task, len(source),
             {k: round(float(v), 4) for k, v in result.items()})
    return result


def evaluate(config, workdir: str | pathlib.Path, *, which: str = "best",
             extra_sets: Mapping[str, tuple[str, str]] | None = None,
             output_dir: str | pathlib.Path | None = None,
             allow_config_change: Sequence[str] = ()) -> dict:
    """Every evaluation set of the config (validation hold-outs, test sets) plus ``extra_sets``
    (name -> (task, folder)), at the decision (temperature, threshold) stored with the
    checkpoint; writes results.json, results.md and example PNGs to ``output_dir`` (default:
    ``workdir``). ``allow_config_change``: recorded config fields that may differ."""
    workdir = pathlib.Path(workdir).resolve()
    output_dir = pathlib.Path(output_dir).resolve() if output_dir else workdir
    loaded = evaluation.load_for_inference(config, workdir, which, allow_config_change)
    predict_fn = steps.jit_predict(loaded.model, loaded.mesh, config.eval.flip_tta)
    val_sets = validation.validation_sets(input_pipeline.make_splits(config),
                                          config.eval.shifted_validation)
    sets = evaluation.eval_sources(config, val_sets, extra_sets)
    kept: dict = {}
    results = {name: evaluate_one(config, predict_fn, loaded, name, task, source, output_dir, kept)
               for name, (task, source) in sets.items()}
    # a validation set the decision was fitted on is reported out of sample, as in the loop
    for name, figures in validation.held_out_of_sets(config.eval, val_sets, kept).items():
        results[name].update(figures)
    json_path, md_path = evaluation.write_results(
        output_dir, results, config.eval.table, config.eval.model_name, label_budgets(config),
        threshold=loaded.threshold, temperature=loaded.temperature,
        extra={"checkpoint": str(which), "step": loaded.step, "workdir": str(workdir)})
    log.info("wrote %s and %s", json_path, md_path)
    print(md_path.read_text())
    return results
