#!/usr/bin/env python3
"""Time the compiled MultiMix training step (compile excluded, median of N) and, given a
PyTorch venv's python, the original's step rebuilt by ../shared/bench/torch_reference.py
with the same shapes in the same invocation. Prints one JSON line.

  python scripts/bench_step.py --size 128 --per-stream 10 --steps 5 \
      --torch-python /path/to/torch-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TORCH_REFERENCE = (REPO / ".." / "shared" / "bench" / "torch_reference.py").resolve()


def time_jax_step(size: int, per_stream: int, num_steps: int, warmup: int,
                  segment_all_images: bool) -> dict:
    import jax
    import numpy as np

    from multimix_jax import steps
    from multimix_jax.config_base import base_config

    config = base_config()
    config.data.image_size, config.data.per_stream_batch = size, per_stream
    mesh = steps.make_mesh()
    model, tx, state = steps.setup(config, mesh, steps_per_epoch=1000)
    rng = np.random.default_rng(0)
    image = lambda: rng.standard_normal((per_stream, size, size, 1)).astype(np.float32)
    batch = steps.shard_batch({
        "seg_labeled": {"image": image(),
                        "mask": (rng.uniform(size=(per_stream, size, size, 1)) > .5).astype(np.float32)},
        "seg_unlabeled": {"image": image()},
        "cls_labeled": {"image": image(), "label": rng.integers(0, 2, per_stream).astype(np.int32)},
        "cls_unlabeled": {"weak": image(), "strong": image()},
    }, mesh)
    step = steps.jit_train_step(model, tx, config, mesh, segment_all_images=segment_all_images)
    t0 = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(warmup + num_steps):
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready((state, metrics))
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"impl": "multimix_jax" + ("_all_images" if segment_all_images else ""),
            "device": str(jax.devices()[0].platform), "num_devices": jax.device_count(),
            "jax": jax.__version__, "size": size, "per_stream": per_stream,
            "images_per_step": 5 * per_stream, "compile_s": compile_s,
            "median_step_s": median, "min_step_s": min(times),
            "images_per_s": 5 * per_stream / median}


def run_torch_reference(python: str, size: int, per_stream: int, num_steps: int,
                        warmup: int, threads: int) -> dict:
    cmd = [python, str(TORCH_REFERENCE), "--size", str(size), "--per-stream", str(per_stream),
           "--steps", str(num_steps), "--warmup", str(warmup), "--device", "cpu"]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--per-stream", type=int, default=10)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--all-images", action="store_true",
                        help="also time the original's decode-all-images variant")
    parser.add_argument("--torch-python", default="",
                        help="python of a venv with torch, to run the reference in the same call")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch.set_num_threads (0 = torch's default, all cores)")
    args = parser.parse_args()
    result = time_jax_step(args.size, args.per_stream, args.steps, args.warmup, False)
    if args.all_images:
        naive = time_jax_step(args.size, args.per_stream, args.steps, args.warmup, True)
        result["all_images_median_step_s"] = naive["median_step_s"]
        result["all_images_images_per_s"] = naive["images_per_s"]
    if args.torch_python:
        ref = run_torch_reference(args.torch_python, args.size, args.per_stream, args.steps,
                                  args.warmup, args.torch_threads)
        result["torch_reference"] = ref
        result["speedup_vs_torch"] = result["images_per_s"] / ref["images_per_s"]
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
