#!/usr/bin/env python3
"""Paired comparison of two evaluations on the sets they share (multimix_jax/compare.py):

  python scripts/compare.py runs/a/results.json runs/b/results.json [--json out.json]

prints, per set and metric, A, B, B - A, its 95% paired bootstrap interval and whether the
interval excludes 0. Each results.json needs the predictions.npz that --mode evaluate writes
beside it.
"""

from __future__ import annotations

import argparse
import json
import sys

from multimix_jax import compare
from multimix_jax.errors import UserError
from multimix_jax.files import write_atomically


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_a", help="results.json (or its folder) of model A")
    parser.add_argument("results_b", help="results.json (or its folder) of model B")
    parser.add_argument("--json", help="also write the comparison to this JSON file")
    args = parser.parse_args(argv)
    try:
        comparison = compare.compare(args.results_a, args.results_b)
    except UserError as e:
        sys.exit(f"error: {e}")
    if args.json:
        write_atomically(args.json, json.dumps(comparison, indent=2))
    print(compare.markdown(comparison), end="")


if __name__ == "__main__":
    main()
