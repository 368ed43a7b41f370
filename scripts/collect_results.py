#!/usr/bin/env python3
"""Gather the results.json of several workdirs into one markdown table: validation and
shifted validation side by side, each figure with its 95% bootstrap interval when the
evaluation recorded one (docs/multimix.md, Shifted validation).

  python scripts/collect_results.py runs/real/multimix runs/real/enc runs/real/unet
"""

from __future__ import annotations

import argparse
import json
import pathlib

from multimix_jax.evaluation import format_interval, format_value
from multimix_jax.names import (VAL_CLS, VAL_CLS_SHIFTED, VAL_SEG, VAL_SEG_DISEASE,
                                VAL_SEG_DISEASE_HARD, VAL_SEG_SHIFTED)

# (column title, set, metric): the sets a shifted-validation run writes.
COLUMNS = (("val Acc", VAL_CLS, "accuracy"), ("val bal. acc", VAL_CLS, "balanced_accuracy"),
           ("val F1-N", VAL_CLS, "f1_normal"), ("val AUC", VAL_CLS, "roc_auc"),
           ("val ECE", VAL_CLS, "ece"),
           ("shifted bal. acc", VAL_CLS_SHIFTED, "balanced_accuracy"),
           ("shifted F1-N", VAL_CLS_SHIFTED, "f1_normal"),
           ("shifted AUC", VAL_CLS_SHIFTED, "roc_auc"),
           ("shifted ECE", VAL_CLS_SHIFTED, "ece"),
           ("val Dice", VAL_SEG, "dice"), ("shifted Dice", VAL_SEG_SHIFTED, "dice"),
           ("disease Dice", VAL_SEG_DISEASE, "dice"),
           ("severe Dice", VAL_SEG_DISEASE_HARD, "dice"))


def cell(values: dict, key: str) -> str:
    """'point [lo, hi]' (the interval from ``ci`` when recorded), '-' when absent."""
    point = format_value(values.get(key))
    interval = values.get("ci", {}).get(key)
    return point if point == "-" or not interval else f"{point} {format_interval(interval)}"


def table(workdirs: list[str]) -> str:
    lines = ["| model | D_l^c/D_l^s | threshold | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for workdir in workdirs:
        path = pathlib.Path(workdir) / "results.json"
        if not path.exists():
            raise SystemExit(f"{path}: missing (did the run finish?)")
        results = json.loads(path.read_text())
        sets = results["sets"]
        cells = [cell(sets.get(name, {}), key) for _, name, key in COLUMNS]
        has_cls = VAL_CLS in sets
        threshold = format_value(results.get("threshold")) if has_cls else "-"
        lines.append(f"| {results['model']} | {results['budgets']} | {threshold} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+")
    print(table(parser.parse_args().workdirs))


if __name__ == "__main__":
    main()
