"""A trained model over evaluation sets: loading it, the prediction loop, each set's metrics
and the results tables (docs/multimix.md, Metrics)."""

from __future__ import annotations

import json
import logging
import math
import pathlib
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from multimix_jax import checkpointing, input_pipeline, metrics, names, sharding, shifts
from multimix_jax import state as train_state
from multimix_jax.files import write_atomically

log = logging.getLogger("multimix_jax")

PAPER_COLUMNS = ("Acc", "F1-N", "F1-P", "DS", "HD", "SSIM", "x-Acc", "x-DS")


class Loaded(NamedTuple):
    """A checkpoint ready for prediction: EMA params when the run used EMA, else the raw ones;
    ``threshold`` is the P(pneumonia) decision threshold stored with the checkpoint."""
    model: Any
    params: Any
    mesh: Any
    step: int
    threshold: float


def stored_threshold(info: Mapping | None) -> float:
    """The checkpoint's decision threshold (fitted on the validation set during training);
    0.5, with one log line saying so, when the checkpoint holds none."""
    threshold = (info or {}).get("cls_threshold")
    if threshold is None or (info or {}).get("val_score") is None:
        log.info("the checkpoint holds no decision threshold (it was not validated): "
                 "classifying at P(pneumonia) >= %.1f", checkpointing.DEFAULT_THRESHOLD)
        return checkpointing.DEFAULT_THRESHOLD
    return float(threshold)


def load_for_inference(config, workdir: str | pathlib.Path, which: str = "best") -> Loaded:
    """The ``which`` checkpoint of ``workdir`` ('best', 'latest' or a step number)."""
    mesh = sharding.make_mesh()
    model, _, state = train_state.setup(config, mesh, steps_per_epoch=1)
    state, step, info = checkpointing.restore_for_inference(
        workdir, checkpointing.abstract_like(state), which)
    return Loaded(model, train_state.inference_params(state, config), mesh, int(step),
                  stored_threshold(info))


# --------------------------------------------------------------------------- prediction loop
def run_predictions(predict_fn: Callable, params, source, batch_size: int, image_size: int,
                    mesh, saliency_count: int = 0) -> dict:
    """Predictions for every example of ``source`` once (padding dropped), with its targets:
    ``prob_pneumonia``, ``mask_prob``, ``label``/``mask`` when the source has them, and the
    ``saliency`` maps of the first ``saliency_count`` examples."""
    outputs: dict[str, list] = {}
    seen = 0
    for batch in input_pipeline.eval_batches(source, batch_size, image_size):
        valid = batch.pop("valid")
        # every process holds the whole batch; each places its devices' rows (multi-host)
        pred = predict_fn(params, sharding.shard_global_batch(batch["image"], mesh))
        row = {"prob_pneumonia": np.asarray(pred["class_probs"])[:, 1],
               "mask_prob": np.asarray(pred["mask_probs"])}
        for key in ("label", "mask"):
            if key in batch:
                row[key] = batch[key][..., 0] if key == "mask" else batch[key]
        if seen < saliency_count:
            row["saliency"] = np.asarray(pred["saliency"])
        for key, value in row.items():
            value = value[valid]
            outputs.setdefault(key, []).append(
                value[:saliency_count - seen] if key == "saliency" else value)
        seen += int(valid.sum())
    return {k: np.concatenate(v) for k, v in outputs.items()}


def set_metrics(task: str, predictions: Mapping[str, np.ndarray], threshold: float = 0.5,
                fit_threshold: bool = False) -> dict:
    """Classification metrics at ``threshold`` (with ``fit_threshold``, also the
    ``fitted_threshold`` that maximises balanced accuracy on this set: ask for it on a
    validation set only), or segmentation metrics of masks thresholded at 0.5."""
    if task == names.CLASSIFICATION:
        labels, probs = predictions["label"], predictions["prob_pneumonia"]
        result = metrics.classification_metrics(labels, probs, threshold)
        if fit_threshold:
            result["fitted_threshold"] = metrics.balanced_threshold(labels, probs)
        return result
    return metrics.segmentation_metrics(metrics.binarize(predictions["mask_prob"]),
                                        predictions["mask"] > 0)


SHIFTED_SCORE_PARTS = ((names.VAL_CLS, "balanced_accuracy"),
                       (names.VAL_CLS_SHIFTED, "balanced_accuracy"), (names.VAL_SEG, "dice"),
                       (names.VAL_SEG_SHIFTED, "dice"), (names.VAL_SEG_DISEASE, "dice"))


def validation_score(results: Mapping[str, dict], criterion: str) -> float:
    """The model-selection criterion (higher is better): 'val_score' = mean of val accuracy
    and val Dice (those available); 'shifted_score' = mean of the balanced accuracies and
    Dice scores of the hold-outs and their shifted copies (those available; docs/multimix.md,
    Shifted validation); or 'SET/METRIC' such as 'val_cls/accuracy'."""
    if criterion in ("val_score", "shifted_score"):
        parts = SHIFTED_SCORE_PARTS if criterion == "shifted_score" else (
            (names.VAL_CLS, "accuracy"), (names.VAL_SEG, "dice"))
        return float(np.mean([results[name][key] for name, key in parts if name in results]))
    name, key = criterion.split("/")
    return float(results[name][key])


# --------------------------------------------------------------------------- sets
def validation_sources(splits: input_pipeline.DataSplits, shifted: bool = False) -> dict:
    """name -> (task, source) of the held-out validation splits (model selection only), with
    their shifted copies when ``shifted`` (docs/multimix.md, Shifted validation)."""
    sets = {}
    if splits.cls_val is not None:
        sets[names.VAL_CLS] = (names.CLASSIFICATION, splits.cls_val)
    if splits.seg_val is not None:
        sets[names.VAL_SEG] = (names.SEGMENTATION, splits.seg_val)
    if shifted:
        sets.update(shifts.shifted_sources(sets))
    return sets


def eval_sources(config, splits: input_pipeline.DataSplits | None = None,
                 extra: Mapping[str, tuple[str, str]] | None = None) -> dict:
    """name -> (task, source): the validation hold-outs, ``config.data.eval_sets`` and any
    ``extra`` folders given as name -> (task, path)."""
    sets = validation_sources(splits, config.eval.shifted_validation) if splits is not None else {}
    data = config.data
    for name, spec in data.eval_sets.items():
        task = spec["task"]
        if not config.tasks.get(task):
            continue  # e.g. no classification sets for the U-Net baseline
        stream_id = 0 if task == names.CLASSIFICATION else 1
        sets[name] = (task, input_pipeline.load_source(
            spec, task, data.image_size, split=spec.get("split", "test"),
            synthetic_offset=input_pipeline.SYNTHETIC_TEST_OFFSET,
            synthetic_seed=data.synthetic_seed + stream_id,
            pneumonia_fraction=data.synthetic_pneumonia_fraction))
    for name, (task, path) in (extra or {}).items():
        sets[name] = (task, input_pipeline.load_source({"kind": "folder", "path": path}, task,
                                                       data.image_size))
    return sets


# --------------------------------------------------------------------------- tables
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


SET_COLUMNS = (("n", "n"), ("accuracy", "accuracy"), ("acc@0.5", "accuracy_at_0.5"),
               ("bal. acc", "balanced_accuracy"), ("F1-N", "f1_normal"),
               ("F1-P", "f1_pneumonia"), ("ROC-AUC", "roc_auc"), ("Dice", "dice"),
               ("Jaccard", "jaccard"), ("HD", "hd"), ("HD95", "hd95"), ("SSIM", "ssim"),
               ("empty masks", "empty_pred"))


def _table_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_tables(results: Mapping[str, dict], layout: Mapping[str, str], model_name: str,
                    budgets: str, threshold: float = 0.5) -> str:
    """The paper's Table 2 row (plus the count of empty predicted masks of its segmentation
    set), the decision threshold, then every set with every metric."""
    row = paper_row(results, layout)
    empty = results.get(layout.get("in_seg", ""), {}).get("empty_pred")
    lines = [_table_row(("model", "D_l^c/D_l^s") + PAPER_COLUMNS + ("empty masks",)),
             "|---" * (len(PAPER_COLUMNS) + 3) + "|",
             _table_row([model_name, budgets] + [format_value(row[c]) for c in PAPER_COLUMNS]
                        + [format_value(empty)]),
             "",
             f"Classification at P(pneumonia) >= {threshold:.3f} (the checkpoint's decision "
             "threshold; acc@0.5 for comparison). HD and HD95 score an empty predicted mask as "
             "the image diagonal; 'empty masks' counts them.",
             "",
             _table_row(("set",) + tuple(title for title, _ in SET_COLUMNS)),
             "|---" * (len(SET_COLUMNS) + 1) + "|"]
    for name, values in results.items():
        lines.append(_table_row([name] + [format_value(values.get(key, math.nan))
                                          for _, key in SET_COLUMNS]))
    return "\n".join(lines) + "\n"


def write_results(output_dir: pathlib.Path, results: Mapping[str, dict],
                  layout: Mapping[str, str], model_name: str, budgets: str, *, threshold: float,
                  extra: dict | None = None) -> tuple[pathlib.Path, pathlib.Path]:
    """``results.json`` (``sets.NAME.METRIC``, ``paper_row``, ``cls_threshold``, ...) and
    ``results.md`` in ``output_dir``, each written atomically."""
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {"model": model_name, "budgets": budgets, "cls_threshold": threshold,
               "sets": results, "paper_row": paper_row(results, layout), **(extra or {})}
    json_path, md_path = output_dir / "results.json", output_dir / "results.md"
    write_atomically(json_path, json.dumps(payload, indent=2, default=float))
    write_atomically(md_path, markdown_tables(results, layout, model_name, budgets, threshold))
    return json_path, md_path
