#!/usr/bin/env python3
"""Ablation grid (paper Table 2 and its supplement): models x label budgets x seeds; the grid's
logic is multimix_jax/grid.py.

  python scripts/ablate.py --config configs/default.py --outdir runs/ablation \
      --models multimix,umtl,enc --budgets 100/10,1000/50,all/all --seeds 0,1,2 --steps 300 \
      [--config.train.eval_every_steps=50 ...]   # overrides apply to every run
  python scripts/ablate.py --config configs/default.py --outdir runs/ablation --report-only

Each cell trains and is evaluated in outdir/<model>/<cls>_<seg>/seed<k> (cell.json); a killed
grid continues when the same command is rerun. Writes results.md (mean ± sd over seeds, then
each seed's row), results.csv (one row per cell), results.json and ablation.png in outdir.
"""

from __future__ import annotations

import logging
import sys

from absl import flags

from multimix_jax import grid

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname).1s %(message)s")
    logging.getLogger("multimix_jax").setLevel(logging.INFO)
    for noisy in ("absl", "orbax", "jax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        grid.main(sys.argv, usage=__doc__)
    except (flags.Error, ValueError) as e:
        sys.exit(f"error: {e} (see --help)")
