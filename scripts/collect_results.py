#!/usr/bin/env python3
"""Gather the results.json of several workdirs into one markdown table: validation and
shifted validation side by side, each figure with its 95% bootstrap interval when the
evaluation recorded one (docs/multimix.md, Shifted validation). With ``--mean`` the workdirs
are seeds of one run, and a last row gives each figure's mean ± sd over them.

  python scripts/collect_results.py runs/real/multimix runs/real/enc runs/real/unet
  python scripts/collect_results.py --mean runs/recipe_s0/multimix runs/recipe_s1/multimix ...

A workdir may also be given as the path of its results.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from multimix_jax.evaluation import format_interval, format_value
from multimix_jax.grid import format_mean_sd, mean_std
from multimix_jax.names import (VAL_CLS, VAL_CLS_SHIFTED, VAL_SEG, VAL_SEG_DISEASE,
                                VAL_SEG_DISEASE_HARD, VAL_SEG_SHIFTED)

# (column title, set, metric): the sets a shifted-validation run writes.
COLUMNS = (("val Acc", VAL_CLS, "accuracy"), ("val bal. acc", VAL_CLS, "balanced_accuracy"),
           ("val F1-N", VAL_CLS, "f1_normal"), ("val AUC", VAL_CLS, "roc_auc"),
           ("val ECE", VAL_CLS, "ece"),
           ("shifted bal. acc", VAL_CLS_SHIFTED, "balanced_accuracy"),
           ("shifted F1-N", VAL_CLS_SHIFTED, "f1_normal"),
           ("shifted AUC", VAL_CLS_SHIFTED, "roc_auc"),
           ("shifted ECE uncal.", VAL_CLS_SHIFTED, "ece_uncalibrated"),
           ("shifted ECE", VAL_CLS_SHIFTED, "ece"),
           ("val Dice", VAL_SEG, "dice"), ("shifted Dice", VAL_SEG_SHIFTED, "dice"),
           ("disease Dice", VAL_SEG_DISEASE, "dice"),
           ("severe Dice", VAL_SEG_DISEASE_HARD, "dice"))


def cell(values: dict, key: str) -> str:
    """'point [lo, hi]' (the interval from ``ci`` when recorded), '-' when absent."""
    point = format_value(values.get(key))
    interval = values.get("ci", {}).get(key)
    return point if point == "-" or not interval else f"{point} {format_interval(interval)}"


def read_results(workdir: str) -> dict:
    path = pathlib.Path(workdir)
    path = path if path.suffix == ".json" else path / "results.json"
    if not path.exists():
        raise SystemExit(f"{path}: missing (did the run finish?)")
    return json.loads(path.read_text())


def table(workdirs: list[str], mean: bool = False) -> str:
    """One row per workdir (its model, budgets, checkpoint step, threshold, temperature and
    COLUMNS); ``mean``: a last row of mean ± sd (sd over the rows, ddof 1), with the count of
    rows where fewer than all have the figure."""
    lines = ["| model | D_l^c/D_l^s | step | threshold | T | " + " | ".join(c[0] for c in COLUMNS)
             + " |", "|---" * (len(COLUMNS) + 5) + "|"]
    columns = []
    for workdir in workdirs:
        results = read_results(workdir)
        sets = results["sets"]
        has_cls = VAL_CLS in sets
        decision = [results.get("threshold"), results.get("temperature")] if has_cls else [None, None]
        values = [results.get("step"), *decision] + [sets.get(name, {}).get(key)
                                                     for _, name, key in COLUMNS]
        cells = [format_value(v) for v in values[:3]] + [cell(sets.get(name, {}), key)
                                                         for _, name, key in COLUMNS]
        lines.append(f"| {results['model']} | {results['budgets']} | " + " | ".join(cells) + " |")
        columns.append(values)
    if mean:
        stats = [mean_std(column) for column in zip(*columns)][1:]  # not the step
        cells = [format_mean_sd(*stat, len(workdirs)) for stat in stats]
        lines.append(f"| mean ± sd, {len(workdirs)} runs | | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", help="workdirs, or their results.json")
    parser.add_argument("--mean", action="store_true",
                        help="the workdirs are seeds of one run: add a mean ± sd row")
    args = parser.parse_args()
    print(table(args.workdirs, args.mean))


if __name__ == "__main__":
    main()
