"""Evaluate a checkpoint on every evaluation set of the config and on any extra folder; write
results.json, results.md and example PNGs (docs/multimix.md, Metrics)."""

from __future__ import annotations

import logging
import pathlib
from typing import Callable, Mapping

from multimix_jax import config_check, evaluation, files, input_pipeline, names, pictures, steps

log = logging.getLogger("multimix_jax")


def label_budgets(config) -> str:
    """'cls/seg' label budgets as in the paper's table; '-' for a task switched off."""
    return "/".join(str(n) if config.tasks.get(task) else "-"
                    for n, task in ((config.labels.cls, names.CLASSIFICATION),
                                    (config.labels.seg, names.SEGMENTATION)))


def evaluate_one(config, predict_fn: Callable, loaded: evaluation.Loaded, name: str, task: str,
                 source, output_dir: pathlib.Path) -> dict:
    """One set, predicted once: its metrics (classification at the checkpoint's threshold)
    and, for a segmentation set, ``config.eval.num_example_pngs`` example PNGs."""
    count = config.eval.num_example_pngs if task == names.SEGMENTATION else 0
    predictions = evaluation.run_predictions(
        predict_fn, loaded.params, source, config.data.eval_batch_size, config.data.image_size,
        loaded.mesh, saliency_count=count)
    result = evaluation.set_metrics(task, predictions, loaded.threshold)
    if count > 0:
        pictures.write_example_pngs(output_dir / "examples", source, predictions, count, name)
    log.info("%s (%s, n=%d): %s", name, task, len(source),
             {k: round(float(v), 4) for k, v in result.items()})
    return result


def evaluate(config, workdir: str | pathlib.Path, *, which: str = "best",
             extra_sets: Mapping[str, tuple[str, str]] | None = None,
             output_dir: str | pathlib.Path | None = None) -> dict:
    """Every evaluation set of the config (validation hold-outs, test sets) plus ``extra_sets``
    (name -> (task, folder)), at the decision threshold stored with the checkpoint; writes
    results.json, results.md and example PNGs to ``output_dir`` (default: ``workdir``)."""
    config_check.check_config_values(config)
    workdir = pathlib.Path(workdir).resolve()
    output_dir = pathlib.Path(output_dir).resolve() if output_dir else workdir
    loaded = evaluation.load_for_inference(config, workdir, which)
    predict_fn = steps.jit_predict(loaded.model, loaded.mesh, config.eval.flip_tta)
    sets = evaluation.eval_sources(config, input_pipeline.make_splits(config), extra_sets)
    staging = files.staging_folder(output_dir, "evaluate")  # moved in once complete
    results = {name: evaluate_one(config, predict_fn, loaded, name, task, source, staging)
               for name, (task, source) in sets.items()}
    evaluation.write_results(
        staging, results, config.eval.table, config.eval.model_name, label_budgets(config),
        threshold=loaded.threshold,
        extra={"checkpoint": str(which), "step": loaded.step, "workdir": str(workdir)})
    tables = ["results.json", "results.md"]
    files.move_outputs_in(staging, output_dir, owned=tables + ["examples"], last=tables)
    json_path, md_path = (output_dir / name for name in tables)
    log.info("wrote %s and %s", json_path, md_path)
    print(md_path.read_text())
    return results
