#!/usr/bin/env python3
"""Paired comparison of two evaluations on the sets they share (multimix_jax/compare.py):

  python scripts/compare.py runs/a/results.json runs/b/results.json [--json out.json]
  python scripts/compare.py A_SEED0 B_SEED0 A_SEED1 B_SEED1 ... [--json out.json]

prints, per set and metric, A, B, B - A, its 95% paired bootstrap interval and whether the
interval excludes 0. Given several seeds' pairs (each seed's run without and with a change),
it prints the means over seeds, each seed's B - A and whether the mean outgrows the spread
between seeds. Each results.json needs the predictions.npz that --mode evaluate writes
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
    parser.add_argument("results", nargs="+", metavar="A B",
                        help="results.json (or its folder) of model A, then of model B; "
                             "one such pair per seed")
    parser.add_argument("--json", help="also write the comparison to this JSON file")
    args = parser.parse_args(argv)
    if len(args.results) % 2:
        sys.exit(f"error: {len(args.results)} results given: give them in pairs, A then B "
                 "(one pair per seed)")
    pairs = list(zip(args.results[::2], args.results[1::2]))
    try:
        if len(pairs) == 1:
            comparison = compare.compare(*pairs[0])
            text = compare.markdown(comparison)
        else:
            comparison = compare.compare_seeds(pairs)
            text = compare.seeds_markdown(comparison)
    except UserError as e:
        sys.exit(f"error: {e}")
    if args.json:
        write_atomically(args.json, json.dumps(comparison, indent=2))
    print(text, end="")


if __name__ == "__main__":
    main()
