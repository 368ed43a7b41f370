"""A trained model over evaluation sets: loading it, the prediction loop, each set's metrics
and the results tables (docs/multimix.md, Metrics)."""

from __future__ import annotations

import functools
import logging
import math
import pathlib
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from multimix_jax import (calibration, checkpointing, input_pipeline, metrics, names,
                          sharding)
from multimix_jax import state as train_state
from multimix_jax import workdir as workdir_lib
from multimix_jax.errors import ConfigMismatchError
from multimix_jax.files import write_atomically, write_json_atomically

log = logging.getLogger("multimix_jax")

PAPER_COLUMNS = ("Acc", "F1-N", "F1-P", "DS", "HD", "SSIM", "x-Acc", "x-DS")


class Loaded(NamedTuple):
    """A checkpoint ready for prediction: EMA params when the run used EMA, else the raw ones;
    ``threshold`` and ``temperature`` are the decision stored with the checkpoint
    (docs/multimix.md, Decision threshold and calibration): P(pneumonia) is calibrated by the
    temperature (None: not calibrated), then classified at the threshold; ``info`` is the
    checkpoint's info as stored (``checkpointing.checkpoint_info``; --adapt_prior's base prior
    is read from it by ``prior.base_prior``)."""
    model: Any
    params: Any
    mesh: Any
    step: int
    threshold: float
    temperature: float | None = None
    info: Mapping | None = None


def stored_decision(info: Mapping | None,
                    flip_tta: bool | None = None) -> tuple[float, float | None]:
    """(threshold, temperature) of a checkpoint's info; (``names.DEFAULT_THRESHOLD``, None),
    with one log line saying so, when the checkpoint was not validated. A threshold fitted
    under another ``eval.flip_tta`` than ``flip_tta`` is refused (it belongs to the other
    prediction function)."""
    info = info or {}
    if info.get("threshold") is None or info.get("val_score") is None:
        log.info("the checkpoint holds no decision threshold (it was not validated): "
                 "classifying at P(pneumonia) >= %.1f", names.DEFAULT_THRESHOLD)
        return names.DEFAULT_THRESHOLD, None
    fitted_with = info.get("flip_tta")
    if flip_tta is not None and fitted_with is not None and bool(fitted_with) != bool(flip_tta):
        raise ConfigMismatchError(
            f"--config.eval.flip_tta={flip_tta}: the checkpoint's decision threshold was "
            f"fitted with eval.flip_tta={bool(fitted_with)}, another prediction function; "
            f"evaluate or predict with --config.eval.flip_tta={bool(fitted_with)}")
    temperature = info.get("temperature")
    return float(info["threshold"]), None if temperature is None else float(temperature)


def load_for_inference(config, workdir: str | pathlib.Path, which: str = "best",
                       allow: Sequence[str] = ()) -> Loaded:
    """The ``which`` checkpoint of ``workdir`` ('best', 'latest' or a step number), after
    checking ``config`` against the workdir's recorded one (``allow``: fields that may
    differ): its inference parameters (``state.ema_params`` with EMA, else ``state.params``)
    restored alone, and its decision."""
    workdir_lib.check_config(config, workdir, inference=True, allow=allow)
    mesh = sharding.make_mesh()
    model, shapes = train_state.abstract_params(config, mesh)
    key = "ema_params" if config.optim.ema_decay > 0 else "params"
    restored, step, info = checkpointing.restore_for_inference(workdir, {key: shapes}, which)
    threshold, temperature = stored_decision(info, config.eval.flip_tta)
    return Loaded(model, restored[key], mesh, int(step), threshold, temperature, info)


# --------------------------------------------------------------------------- prediction loop
def run_predictions(predict_fn: Callable, params, source, batch_size: int, image_size: int,
                    mesh, saliency_count: int = 0, temperature: float | None = None) -> dict:
    """Predictions for every example of ``source`` once (padding dropped), with its targets:
    ``prob_pneumonia`` (calibrated by ``temperature`` when one is given: what the decision
    threshold refers to), ``prob_pneumonia_uncalibrated`` (the model's softmax),
    ``mask_prob``, ``label``/``mask`` when the source has them, and the ``saliency`` maps of
    the first ``saliency_count`` examples."""
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
    out = {k: np.concatenate(v) for k, v in outputs.items()}
    out["prob_pneumonia_uncalibrated"] = out["prob_pneumonia"]
    if temperature is not None:
        out["prob_pneumonia"] = calibration.apply_temperature(out["prob_pneumonia"], temperature)
    return out


def predictor(predict_fn: Callable, params, data_config, mesh,
              temperature: float | None = None) -> Callable:
    """``source, saliency_count=0 -> run_predictions(...)``: the predictions of a set by this
    model and these parameters, at the config's ``data.eval_batch_size`` and
    ``data.image_size``, bound once."""
    return functools.partial(run_predictions, predict_fn, params,
                             batch_size=data_config.eval_batch_size,
                             image_size=data_config.image_size, mesh=mesh,
                             temperature=temperature)


def set_metrics(task: str, predictions: Mapping[str, np.ndarray],
                threshold: float = names.DEFAULT_THRESHOLD, per_image: Mapping | None = None) -> dict:
    """Classification metrics at ``threshold`` with ECE and Brier score of "prob_pneumonia"
    (and ``ece_uncalibrated``, ``brier_uncalibrated`` of "prob_pneumonia_uncalibrated" when
    a temperature made it differ, ``calibration.uncalibrated``), or
    segmentation metrics of masks thresholded at 0.5 (from ``per_image``, their
    ``metrics.per_image_segmentation``, when given)."""
    if task == names.CLASSIFICATION:
        labels, probs = predictions["label"], predictions["prob_pneumonia"]
        result = metrics.classification_metrics(labels, probs, threshold)
        result.update(metrics.calibration_metrics(labels, probs))
        raw = calibration.uncalibrated(predictions)
        if raw is not None:
            result.update({f"{k}_uncalibrated": v
                           for k, v in metrics.calibration_metrics(labels, raw).items()})
        return result
    return metrics.segmentation_metrics(metrics.binarize(predictions["mask_prob"]),
                                        predictions["mask"] > 0, per_image)


# --------------------------------------------------------------------------- tables
def label_budgets(config) -> str:
    """'cls/seg' label budgets as in the paper's table; '-' for a task switched off."""
    return "/".join(str(n) if config.tasks.get(task) else "-"
                    for n, task in ((config.labels.cls, names.CLASSIFICATION),
                                    (config.labels.seg, names.SEGMENTATION)))


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
               ("F1-P", "f1_pneumonia"), ("ROC-AUC", "roc_auc"), ("ECE", "ece"),
               ("Brier", "brier"), ("ECE uncal.", "ece_uncalibrated"),
               ("Brier uncal.", "brier_uncalibrated"), ("Dice", "dice"),
               ("Jaccard", "jaccard"), ("HD", "hd"), ("HD95", "hd95"), ("SSIM", "ssim"),
               ("HD-penalised", "hd_penalised"), ("est. prior", "estimated_prior"),
               ("drift", "score_drift"))


def _table_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


TRIVIAL_RULE_TITLES = {"all_pneumonia": "all pneumonia", "all_normal": "all normal",
                       "training_prior": "training prior"}


def format_interval(interval) -> str:
    if not interval or any(v is None or math.isnan(v) for v in interval):
        return "-"
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def markdown_tables(results: Mapping[str, dict], layout: Mapping[str, str], model_name: str,
                    budgets: str, threshold: float = names.DEFAULT_THRESHOLD,
                    temperature: float | None = None, notes: Sequence[str] = ()) -> str:
    """The paper's Table 2 row (plus the count of its segmentation set's images whose HD is
    the penalty), the decision and ``notes`` (what the figures were computed on), then every
    set with every metric, each classification set followed by its trivial rules' rows
    ("sets.NAME.trivial_rules"), then the sets' 95% bootstrap intervals ("sets.NAME.ci")."""
    row = paper_row(results, layout)
    empty = results.get(layout.get("in_seg", ""), {}).get("hd_penalised")
    calibrated = ("" if temperature is None else
                  f"calibrated by the temperature {temperature:.3f}, ")
    lines = [_table_row(("model", "D_l^c/D_l^s") + PAPER_COLUMNS + ("HD-penalised",)),
             "|---" * (len(PAPER_COLUMNS) + 3) + "|",
             _table_row([model_name, budgets] + [format_value(row[c]) for c in PAPER_COLUMNS]
                        + [format_value(empty)]),
             "",
             f"Classification at P(pneumonia) >= {threshold:.3f} ({calibrated}the checkpoint's "
             "decision threshold; acc@0.5 for comparison). HD and HD95 score an image whose "
             "predicted or true mask alone is empty as the image diagonal; 'HD-penalised' "
             "counts them. Under each classification set, the rules that ignore the film "
             "(P(pneumonia) = 1, 0, or the labelled training films' pneumonia fraction, "
             "classified at 0.5). ECE: 15 equal-width bins; 'uncal.': before temperature "
             "scaling.",
             *[line for note in notes if note for line in ("", note)],
             "",
             _table_row(("set",) + tuple(title for title, _ in SET_COLUMNS)),
             "|---" * (len(SET_COLUMNS) + 1) + "|"]
    for name, values in results.items():
        lines.append(_table_row([name] + [format_value(values.get(key, math.nan))
                                          for _, key in SET_COLUMNS]))
        for rule, rule_values in values.get("trivial_rules", {}).items():
            lines.append(_table_row([f"{name}: {TRIVIAL_RULE_TITLES[rule]}"] + [
                format_value(rule_values.get(key, math.nan)) for _, key in SET_COLUMNS]))
    with_ci = {name: values["ci"] for name, values in results.items() if values.get("ci")}
    if with_ci:
        columns = [(title, key) for title, key in SET_COLUMNS
                   if any(key in ci for ci in with_ci.values())]
        lines += ["", "95% bootstrap intervals (percentile, resampling patients, or films "
                  "where a set names no patients; multimix_jax/intervals.py):", "",
                  _table_row(("set",) + tuple(title for title, _ in columns)),
                  "|---" * (len(columns) + 1) + "|"]
        lines += [_table_row([name] + [format_interval(ci.get(key)) for _, key in columns])
                  for name, ci in with_ci.items()]
    return "\n".join(lines) + "\n"


def write_results(output_dir: pathlib.Path, results: Mapping[str, dict],
                  layout: Mapping[str, str], model_name: str, budgets: str, *, threshold: float,
                  temperature: float | None = None, extra: dict | None = None,
                  notes: Sequence[str] = ()) -> tuple[pathlib.Path, pathlib.Path]:
    """``results.json`` (``sets.NAME.METRIC``, ``sets.NAME.ci.METRIC = [lo, hi]``,
    ``sets.NAME.trivial_rules``, ``paper_row``, ``threshold``, ``temperature`` (None:
    uncalibrated), ...) and ``results.md`` in ``output_dir``, each written atomically."""
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {"model": model_name, "budgets": budgets, "threshold": threshold,
               "temperature": temperature,
               "sets": results, "paper_row": paper_row(results, layout), **(extra or {})}
    json_path, md_path = output_dir / "results.json", output_dir / "results.md"
    write_json_atomically(json_path, payload)  # NaN (a one-class set) -> null
    write_atomically(md_path, markdown_tables(results, layout, model_name, budgets, threshold,
                                              temperature, notes))
    return json_path, md_path
