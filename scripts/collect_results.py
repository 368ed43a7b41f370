#!/usr/bin/env python3
"""Gather the results.json of several workdirs into one Table-2 style markdown table.

  python scripts/collect_results.py runs/real/multimix runs/real/enc runs/real/unet
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from multimix_jax.evaluation import PAPER_COLUMNS, format_value  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+")
    args = parser.parse_args()
    print("| model | D_l^c/D_l^s | " + " | ".join(PAPER_COLUMNS) + " |")
    print("|---|---|" + "---|" * len(PAPER_COLUMNS))
    for workdir in args.workdirs:
        path = pathlib.Path(workdir) / "results.json"
        if not path.exists():
            raise SystemExit(f"{path}: missing (did the run finish?)")
        results = json.loads(path.read_text())
        row = results["paper_row"]
        print(f"| {results['model']} | {results['budgets']} | " +
              " | ".join(format_value(row[c]) for c in PAPER_COLUMNS) + " |")


if __name__ == "__main__":
    main()
