#!/usr/bin/env python3
"""Films per second of ``--mode predict``'s computation: ``steps.jit_predict``, the jitted
function the predict and evaluate paths call (class probabilities, saliency map, mask), on
randomly initialised parameters of ``configs/default.py``, per image size and batch size.
Prints one JSON line with a row per (dtype, size, batch[, flip_tta]).

Images are uint8 batches already placed on the devices, as ``evaluation.run_predictions``
places them; reading files, resizing and writing PNGs are not in it. A row's first call
(compile and one run) is ``compile_s``; then each of --repeats rounds makes --warmup untimed
and --calls timed calls, a round's figure is its median call, and the row gives the median
over rounds with their min and max.

  python scripts/bench_predict.py --sizes 128 256 --batches 1 32 --repeats 3 --flip-tta
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import runpy
import statistics
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


# scripts/bench_step.py's timing rounds and their spread (scripts/ is not a package)
BENCH_STEP = REPO / "scripts" / "bench_step.py"


def time_predict(size: int, batch: int, dtype: str, flip_tta: bool, calls: int, warmup: int,
                 repeats: int, seed: int = 0) -> dict:
    """One row: ``steps.jit_predict`` at ``size`` px on ``batch`` films in ``dtype``."""
    import jax
    import numpy as np

    from multimix_jax import models, sharding, steps

    config = runpy.run_path(str(REPO / "configs" / "default.py"))["get_config"]()
    config.model.dtype = dtype
    mesh = sharding.make_mesh()
    if batch % mesh.size:
        raise SystemExit(f"--batches {batch}: must be a multiple of the {mesh.size} devices "
                         "(the batch is split over them)")
    model = models.build_model(config.model)
    params = jax.device_put(models.init_params(model, jax.random.PRNGKey(seed), size),
                            sharding.replicated(mesh))
    rng = np.random.default_rng(seed)
    images = sharding.shard_global_batch(
        rng.integers(0, 256, (batch, size, size, 1), dtype=np.uint8), mesh)
    predict_fn = steps.jit_predict(model, mesh, flip_tta)
    t0 = time.perf_counter()
    jax.block_until_ready(predict_fn(params, images))
    compile_s = time.perf_counter() - t0
    bench_step = runpy.run_path(str(BENCH_STEP))
    round_medians = bench_step["timed_rounds"](
        lambda: jax.block_until_ready(predict_fn(params, images)), repeats, warmup, calls)
    median = statistics.median(round_medians)
    return {"dtype": dtype, "size": size, "batch": batch, "flip_tta": flip_tta,
            "compile_s": compile_s, "median_call_s": median,
            "call_s": bench_step["spread"](round_medians),
            "films_per_s": batch / median,
            "films_per_s_spread": bench_step["spread"]([batch / t for t in round_medians])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256],
                        help="image sizes (px)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32],
                        help="films per call (config.data.eval_batch_size)")
    parser.add_argument("--dtype", nargs="+", default=["float32"],
                        choices=("float32", "bfloat16"), help="config.model.dtype(s) to time")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (median and spread)")
    parser.add_argument("--flip-tta", action="store_true",
                        help="also time eval.flip_tta (each film and its mirror, averaged)")
    args = parser.parse_args()
    for flag, value in (("--calls", args.calls), ("--repeats", args.repeats)):
        if value < 1:
            raise SystemExit(f"{flag} {value}: must be at least 1")
    import jax

    rows = [time_predict(size, batch, dtype, flip, args.calls, args.warmup, args.repeats)
            for dtype in args.dtype for size in args.sizes for batch in args.batches
            for flip in ((False, True) if args.flip_tta else (False,))]
    device = jax.devices()[0]
    print(json.dumps({"bench": "predict", "device": device.platform,
                      "device_kind": device.device_kind, "num_devices": jax.device_count(),
                      "jax": jax.__version__, "cpu_count": os.cpu_count(),
                      "calls": args.calls, "warmup": args.warmup, "repeats": args.repeats,
                      "rows": rows}))


if __name__ == "__main__":
    main()
