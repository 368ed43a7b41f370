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

# (column title, set, metric): the sets a shifted-validation run writes.
COLUMNS = (("val Acc", "val_cls", "accuracy"), ("val bal. acc", "val_cls", "balanced_accuracy"),
           ("val F1-N", "val_cls", "f1_normal"), ("val AUC", "val_cls", "roc_auc"),
           ("val ECE", "val_cls", "ece"),
           ("shifted bal. acc", "val_cls_shifted", "balanced_accuracy"),
           ("shifted F1-N", "val_cls_shifted", "f1_normal"),
           ("shifted AUC", "val_cls_shifted", "roc_auc"),
           ("shifted ECE", "val_cls_shifted", "ece"),
           ("val Dice", "val_seg", "dice"), ("shifted Dice", "val_seg_shifted", "dice"),
           ("disease Dice", "val_seg_disease", "dice"))


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
        has_cls = "val_cls" in sets
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
