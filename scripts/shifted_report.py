#!/usr/bin/env python3
"""Validation and shifted validation of trained workdirs, under each decision rule a recipe
decision looks at: threshold 0.5, the threshold fitted on the hold-out alone, the threshold
fitted on the hold-out and its shifted copy pooled (each with the config's eval.calibrate);
with and without flip TTA (docs/multimix.md, Shifted validation; Decision threshold and
calibration). The rules are multimix_jax/validation.py's: a set a rule is fitted on is
reported out of sample (cross-fitted). One JSON object per workdir, one markdown row per
workdir and rule.

  python scripts/shifted_report.py --config configs/shared_real.py:multimix \
      --config.data_root=DIR --workdirs runs/real/multimix [--checkpoint best]

The config (and its overrides) must be the one each workdir was trained with (it is checked
against the workdir's record): it fixes the validation split, the image size and the model.
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags
from ml_collections import config_flags

from multimix_jax import evaluation, names, sources, steps, validation

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line (defined when run as a script, so that importing defines nothing)."""
    config_flags.DEFINE_config_file("config", None, "configs/*.py[:VARIANT] the workdirs used.")
    flags.DEFINE_list("workdirs", None, "Trained workdirs (comma-separated).")
    flags.DEFINE_string("checkpoint", "best", "best | latest | a step number.")
    flags.DEFINE_string("output", None, "Also write the JSON lines here.")
    flags.mark_flags_as_required(["config", "workdirs"])

# rule -> (eval.threshold, the sets the decision is fitted on)
RULES = {"0.5": ("fixed", (names.VAL_CLS,)),
         "fit_on_val": ("fitted", (names.VAL_CLS,)),
         "fit_pooled": ("fitted", (names.VAL_CLS, names.VAL_CLS_SHIFTED))}


def report(config, workdir: str, which: str) -> dict:
    """{'step', 'plain'|'tta': {'thresholds', 'temperatures', SET@RULE: metrics,
    SEG_SET: metrics}}."""
    loaded = evaluation.load_for_inference(config, workdir, which)
    sets = validation.validation_sets(sources.make_splits(config), shifted=True)
    out = {"workdir": workdir, "step": loaded.step}
    for tta in (False, True):
        predict_fn = steps.jit_predict(loaded.model, loaded.mesh, tta)
        preds = validation.predict_sets(
            evaluation.predictor(predict_fn, loaded.params, config.data, loaded.mesh), sets)
        res = {"thresholds": {}, "temperatures": {}}
        for rule, (threshold_rule, pool) in RULES.items():
            eval_config = config.eval.copy_and_resolve_references()
            eval_config.threshold = threshold_rule
            results, decision = validation.score_sets(eval_config, sets, preds, pool)
            res["thresholds"][rule] = decision.threshold
            res["temperatures"][rule] = decision.temperature
            for name, (task, _) in sets.items():
                if task == names.CLASSIFICATION:
                    res[f"{name}@{rule}"] = results[name]
                else:
                    res[name] = results[name]
        out["tta" if tta else "plain"] = res
    return out


def markdown_rows(result: dict) -> list[str]:
    rows = []
    get = lambda res, name, key: evaluation.format_value(res.get(name, {}).get(key))
    for mode in ("plain", "tta"):
        res = result[mode]
        for rule in res.get("thresholds", {"-": None}):
            cls = lambda name, key: get(res, f"{name}@{rule}", key)
            rows.append(" | ".join([
                result["workdir"], mode, rule, evaluation.format_value(res.get("thresholds", {}).get(rule)),
                cls("val_cls", "accuracy"), cls("val_cls", "balanced_accuracy"), cls("val_cls", "f1_normal"),
                cls("val_cls", "roc_auc"), cls("val_cls_shifted", "balanced_accuracy"),
                cls("val_cls_shifted", "f1_normal"), cls("val_cls_shifted", "roc_auc"),
                get(res, "val_seg", "dice"), get(res, "val_seg_shifted", "dice"),
                get(res, "val_seg_disease", "dice")]))
    return ["| " + row + " |" for row in rows]


def main(argv) -> None:
    del argv
    header = ("| workdir | predict | threshold rule | threshold | val Acc | val bal. acc | val F1-N | "
              "val AUC | shifted bal. acc | shifted F1-N | shifted AUC | val Dice | shifted Dice | "
              "disease Dice |")
    lines, results = [header, "|---" * 14 + "|"], []
    for workdir in FLAGS.workdirs:
        result = report(FLAGS.config, workdir, FLAGS.checkpoint)
        results.append(json.dumps(result, default=float))
        lines += markdown_rows(result)
    if FLAGS.output:
        pathlib.Path(FLAGS.output).write_text("\n".join(results) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    define_flags()
    app.run(main)
