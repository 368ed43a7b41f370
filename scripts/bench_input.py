#!/usr/bin/env python3
"""Throughput of the five-stream Grain training pipeline against the training step's
consumption rate. Prints one JSON line.

Counts the images a batch delivers: per_stream for each of seg_labeled, seg_unlabeled and
cls_labeled, and 2 x per_stream for cls_unlabeled (weak + strong views of each source
image), i.e. 50 at --per-stream 10, the same count as scripts/bench_step.py's step. Each
worker count (Grain worker processes, config.data.worker_count) gets a fresh iterator;
the first --warmup batches (worker start-up included) are not timed, then --batches are;
images_per_s is the rate over the second half of those (after the workers' buffers drain).
With --repeats R each worker count is timed R times (a fresh iterator each): the figures are
the median with the min and max (spread). ``per_core_images_per_s`` divides by the processes
that augment (the main process with 0 workers, else the workers) and ``scaling`` is the rate
over the 0-worker rate.

Sources are materialised in memory first (synthetic data are generated once, folders read
once), so the pipeline cost measured is shuffling, augmentation and batching. The step's
rate comes from scripts/bench_step.py's ``time_jax_step`` at the same size and batch in the
same invocation, unless --step-images-per-s gives it (a ~15 s step at 256 px on 2 cores).

  python scripts/bench_input.py --size 256 --workers 0 1 2 --batches 30 --steps 2 \
      --out docs/bench/bench_input_cpu256.json
  python scripts/bench_input.py --size 256 --step-images-per-s 3.3 --data folder \
      --path DATA/kermany_pneumonia_224/train --seg-path DATA/lung_masks_openist
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def make_config(args):
    from multimix_jax.config_base import base_config

    config = base_config()
    config.data.image_size, config.data.per_stream_batch = args.size, args.per_stream
    if args.cls_examples:
        config.data.cls.num_examples = args.cls_examples
    if args.seg_examples:
        config.data.seg.num_examples = args.seg_examples
    if args.data == "folder":
        if not args.path:
            raise SystemExit("--data folder needs --path (a classification folder)")
        config.data.cls.kind, config.data.cls.path = "folder", args.path
        if args.seg_path:  # otherwise the segmentation streams stay synthetic
            config.data.seg.kind, config.data.seg.path = "folder", args.seg_path
    return config


def images_per_batch(streams, per_stream: int) -> int:
    return sum(per_stream * (2 if stream == "cls_unlabeled" else 1) for stream in streams)


def time_pipeline(config, splits, streams, workers: int, warmup: int, num_batches: int) -> dict:
    from multimix_jax import input_pipeline

    config.data.worker_count = workers
    t0 = time.perf_counter()
    iterator = iter(input_pipeline.train_dataset(config, splits, streams))
    for _ in range(warmup):
        next(iterator)
    startup_s = time.perf_counter() - t0
    times = [time.perf_counter()]
    for _ in range(num_batches):
        next(iterator)
        times.append(time.perf_counter())
    iterator.close()
    n_images = images_per_batch(streams, config.data.per_stream_batch)
    # Worker processes fill their buffers during the warm-up, which flatters the first timed
    # batches; the second half of the timed batches is the steady state.
    half = num_batches // 2
    steady = (num_batches - half) / (times[-1] - times[half])
    return {"images_per_s": n_images * steady, "batches_per_s": steady,
            "images_per_s_all_timed": n_images * num_batches / (times[-1] - times[0]),
            "warmup_s": startup_s, "timed_s": times[-1] - times[0]}


def time_pipeline_rounds(config, splits, streams, workers: int, args) -> dict:
    """``time_pipeline`` --repeats times: median rate, spread and the rate per core."""
    import statistics

    rounds = [time_pipeline(config, splits, streams, workers, args.warmup, args.batches)
              for _ in range(args.repeats)]
    rates = [r["images_per_s"] for r in rounds]
    median = statistics.median(rates)
    return {"images_per_s": median,
            "images_per_s_spread": {"median": median, "min": min(rates), "max": max(rates),
                                    "rounds": len(rates)},
            "per_core_images_per_s": median / max(1, workers),
            "warmup_s": statistics.median(r["warmup_s"] for r in rounds), "rounds": rounds}


def step_images_per_s(args) -> dict:
    spec = importlib.util.spec_from_file_location("bench_step", REPO / "scripts" / "bench_step.py")
    bench_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_step)
    result = bench_step.time_jax_step(args.size, args.per_stream, args.steps, args.step_warmup,
                                      False)
    return {"step_images_per_s": result["images_per_s"],
            "step_median_s": result["median_step_s"], "step_device": result["device"],
            "step_jax": result["jax"], "step_timed_steps": args.steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--per-stream", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=30, help="timed batches per worker count")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--data", choices=("synthetic", "folder"), default="synthetic")
    parser.add_argument("--path", default="", help="classification folder (--data folder)")
    parser.add_argument("--seg-path", default="",
                        help="segmentation folder images/+masks/ (--data folder; else synthetic)")
    parser.add_argument("--cls-examples", type=int, default=0,
                        help="synthetic classification pool (0: the config's 2000)")
    parser.add_argument("--seg-examples", type=int, default=0,
                        help="synthetic segmentation pool (0: the config's 400)")
    parser.add_argument("--step-images-per-s", type=float, default=0.0,
                        help="the step's rate, if known (skips timing the JAX step)")
    parser.add_argument("--steps", type=int, default=2, help="timed JAX steps")
    parser.add_argument("--step-warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="rounds per worker count")
    parser.add_argument("--out", default="", help="also write the JSON line to this file")
    args = parser.parse_args()

    from multimix_jax import sources
    from multimix_jax.plan import Plan

    config = make_config(args)
    t0 = time.perf_counter()
    splits = sources.make_splits(config)
    prepare_s = time.perf_counter() - t0
    streams = Plan.from_config(config).streams
    result = {
        "bench": "input_pipeline", "size": args.size, "per_stream": args.per_stream,
        "streams": list(streams), "images_per_batch": images_per_batch(streams, args.per_stream),
        "data": {"cls": config.data.cls.kind, "seg": config.data.seg.kind,
                 "cls_path": config.data.cls.path, "seg_path": config.data.seg.path},
        "source_sizes": splits.summary(), "prepare_s": prepare_s,
        "warmup_batches": args.warmup, "timed_batches": args.batches,
    }
    result["pipeline"] = {str(w): time_pipeline_rounds(config, splits, streams, w, args)
                          for w in args.workers}
    base = result["pipeline"].get("0")
    if base:
        result["scaling"] = {w: r["images_per_s"] / base["images_per_s"]
                             for w, r in result["pipeline"].items()}
    if args.step_images_per_s > 0:
        result.update(step_images_per_s=args.step_images_per_s, step_source="given")
    else:  # after the pipeline runs, so the two do not compete for the cores
        result.update(step_images_per_s(args), step_source="measured")
    result["ratio_pipeline_over_step"] = {
        w: r["images_per_s"] / result["step_images_per_s"] for w, r in result["pipeline"].items()}
    result.update(cpu_count=os.cpu_count(), usable_cores=len(os.sched_getaffinity(0)),
                  grain=importlib.metadata.version("grain"))
    line = json.dumps(result)
    print(line)
    if args.out:
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(line + "\n")


if __name__ == "__main__":
    main()
