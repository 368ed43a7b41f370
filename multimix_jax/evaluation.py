"""Evaluation sets, prediction loops and the results tables (method.md, Metrics)."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Callable, Mapping

import numpy as np

from multimix_jax import input_pipeline, metrics, steps

PAPER_COLUMNS = ("Acc", "F1-N", "F1-P", "DS", "HD", "SSIM", "x-Acc", "x-DS")


def run_predictions(predict_fn: Callable, params, source, batch_size: int, image_size: int,
                    mesh, keep_saliency: bool = False) -> dict:
    """Predictions for every example of ``source`` once (padding dropped), with targets."""
    outputs: dict[str, list] = {}
    for batch in input_pipeline.eval_batches(source, batch_size, image_size):
        valid = batch.pop("valid")
        pred = predict_fn(params, steps.shard_batch(batch["image"], mesh))
        row = {"prob_pneumonia": np.asarray(pred["class_probs"])[:, 1],
               "mask_prob": np.asarray(pred["mask_probs"])}
        if keep_saliency:
            row["saliency"] = np.asarray(pred["saliency"])
        for key in ("label", "mask"):
            if key in batch:
                row[key] = batch[key][..., 0] if key == "mask" else batch[key]
        for key, value in row.items():
            outputs.setdefault(key, []).append(value[valid])
    return {k: np.concatenate(v) for k, v in outputs.items()}


def evaluate_set(predict_fn: Callable, params, source, task: str, batch_size: int,
                 image_size: int, mesh) -> dict:
    """Classification or segmentation metrics of one evaluation set."""
    out = run_predictions(predict_fn, params, source, batch_size, image_size, mesh)
    if task == input_pipeline.CLASSIFICATION:
        return metrics.classification_metrics(out["label"], out["prob_pneumonia"])
    return metrics.segmentation_metrics(metrics.binarize(out["mask_prob"]), out["mask"] > 0)


def validation_score(results: Mapping[str, dict], criterion: str) -> float:
    """The model-selection criterion: 'val_score' = mean of val accuracy and val Dice (those
    available), or 'SET/METRIC' such as 'val_cls/accuracy' (higher is better)."""
    if criterion == "val_score":
        parts = [results[name][key] for name, key in (("val_cls", "accuracy"), ("val_seg", "dice"))
                 if name in results]
        return float(np.mean(parts))
    name, key = criterion.split("/")
    return float(results[name][key])


def paper_row(results: Mapping[str, dict], layout: Mapping[str, str]) -> dict:
    """Table-2 columns from the sets named in ``config.eval.table`` (in_cls, in_seg, ...)."""
    get = lambda role, key: results.get(layout.get(role, ""), {}).get(key, math.nan)
    return {"Acc": get("in_cls", "accuracy"), "F1-N": get("in_cls", "f1_normal"),
            "F1-P": get("in_cls", "f1_pneumonia"), "DS": get("in_seg", "dice"),
            "HD": get("in_seg", "hd"), "SSIM": get("in_seg", "ssim"),
            "x-Acc": get("cross_cls", "accuracy"), "x-DS": get("cross_seg", "dice")}


def format_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.3f}"


def markdown_tables(results: Mapping[str, dict], layout: Mapping[str, str], model_name: str,
                    budgets: str) -> str:
    """The paper's Table 2 row, then every set with every metric."""
    row = paper_row(results, layout)
    lines = ["| model | D_l^c/D_l^s | " + " | ".join(PAPER_COLUMNS) + " |",
             "|---|---|" + "---|" * len(PAPER_COLUMNS),
             f"| {model_name} | {budgets} | " + " | ".join(format_value(row[c]) for c in PAPER_COLUMNS) + " |",
             "", "| set | n | accuracy | F1-N | F1-P | ROC-AUC | Dice | Jaccard | HD | HD95 | SSIM |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = ("accuracy", "f1_normal", "f1_pneumonia", "roc_auc", "dice", "jaccard", "hd", "hd95", "ssim")
    for name, values in results.items():
        lines.append(f"| {name} | {format_value(values.get('n'))} | " +
                     " | ".join(format_value(values.get(k, math.nan)) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def write_results(workdir: pathlib.Path, results: Mapping[str, dict], layout: Mapping[str, str],
                  model_name: str, budgets: str, extra: dict | None = None) -> tuple[pathlib.Path, pathlib.Path]:
    """``results.json`` and ``results.md`` in ``workdir`` (written atomically)."""
    workdir.mkdir(parents=True, exist_ok=True)
    payload = {"model": model_name, "budgets": budgets, "sets": results,
               "paper_row": paper_row(results, layout), **(extra or {})}
    json_path, md_path = workdir / "results.json", workdir / "results.md"
    for path, text in ((json_path, json.dumps(payload, indent=2, default=float)),
                       (md_path, markdown_tables(results, layout, model_name, budgets))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return json_path, md_path


def validation_sources(splits: input_pipeline.DataSplits) -> dict:
    """name -> (task, source) of the held-out validation splits (model selection only)."""
    sets = {}
    if splits.cls_val is not None:
        sets["val_cls"] = (input_pipeline.CLASSIFICATION, splits.cls_val)
    if splits.seg_val is not None:
        sets["val_seg"] = (input_pipeline.SEGMENTATION, splits.seg_val)
    return sets


def eval_sources(config, splits: input_pipeline.DataSplits | None = None,
                 extra: Mapping[str, tuple[str, str]] | None = None) -> dict:
    """name -> (task, source): the validation hold-outs, ``config.data.eval_sets`` and any
    ``extra`` folders given as name -> (task, path)."""
    sets = validation_sources(splits) if splits is not None else {}
    data = config.data
    for name, spec in data.eval_sets.items():
        task = spec["task"]
        if not config.tasks.get(task):
            continue  # e.g. no classification sets for the U-Net baseline
        stream_id = 0 if task == input_pipeline.CLASSIFICATION else 1
        sets[name] = (task, input_pipeline.load_source(
            spec, task, data.image_size, split=spec.get("split", "test"),
            synthetic_offset=input_pipeline.SYNTHETIC_TEST_OFFSET,
            synthetic_seed=data.synthetic_seed + stream_id + spec.get("seed_offset", 0),
            pneumonia_fraction=data.synthetic_pneumonia_fraction))
    for name, (task, path) in (extra or {}).items():
        sets[name] = (task, input_pipeline.load_source({"kind": "folder", "path": path}, task,
                                                       data.image_size))
    return sets
