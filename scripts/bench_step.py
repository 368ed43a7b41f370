#!/usr/bin/env python3
"""Time the compiled MultiMix training step (compile excluded) and, given a PyTorch venv's
python and the reference script's path, the original's step rebuilt in PyTorch with the same
shapes on the same kind of device (cuda when JAX runs on a GPU). Prints one JSON line.

Each of --repeats rounds runs --warmup untimed then --steps timed steps; a round's figure is
its median step; the result is the median over rounds with their min and max (the spread),
so a busy machine shows up as a wide spread.

  python scripts/bench_step.py --size 128 --per-stream 10 --steps 5 --repeats 3 \
      --dtype float32 bfloat16 --torch-python /path/to/torch-venv/bin/python \
      --torch-reference /path/to/torch_reference.py
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import runpy
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def spread(values: list[float]) -> dict:
    """Median, min and max of per-round figures."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "rounds": len(values)}


def random_batch(size: int, per_stream: int, seed: int = 0) -> dict:
    """All five streams at ``size`` px as the input pipeline delivers them (uint8 images and
    masks, int32 labels), so that the step is the training loop's very program."""
    import numpy as np

    rng = np.random.default_rng(seed)
    image = lambda: rng.integers(0, 256, (per_stream, size, size, 1), dtype=np.uint8)
    return {
        "seg_labeled": {"image": image(),
                        "mask": rng.integers(0, 2, (per_stream, size, size, 1), dtype=np.uint8)},
        "seg_unlabeled": {"image": image()},
        "cls_labeled": {"image": image(), "label": rng.integers(0, 2, per_stream).astype(np.int32)},
        "cls_unlabeled": {"weak": image(), "strong": image()},
    }


def time_jax_step(size: int, per_stream: int, num_steps: int, warmup: int,
                  segment_all_images: bool, dtype: str = "float32", repeats: int = 1) -> dict:
    """The jitted training step of ``configs/default.py`` at ``size`` px in ``dtype`` (the
    same program as the training loop's, so a compilation cache serves both)."""
    import jax

    from multimix_jax import sharding, steps
    from multimix_jax import state as train_state

    config = runpy.run_path(str(REPO / "configs" / "default.py"))["get_config"]()
    config.data.image_size, config.data.per_stream_batch = size, per_stream
    config.model.dtype = dtype
    mesh = sharding.make_mesh()
    model, tx, state = train_state.setup(config, mesh, steps_per_epoch=1000)
    batch = sharding.shard_batch(random_batch(size, per_stream), mesh)
    step = steps.jit_train_step(model, tx, config, mesh, segment_all_images=segment_all_images)
    t0 = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    round_medians = []
    for _ in range(repeats):
        times = []
        for i in range(warmup + num_steps):
            t0 = time.perf_counter()
            state, metrics = step(state, batch)
            jax.block_until_ready((state, metrics))
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        round_medians.append(statistics.median(times))
    median = statistics.median(round_medians)
    images = 5 * per_stream
    return {"impl": "multimix_jax" + ("_all_images" if segment_all_images else ""),
            "dtype": dtype, "device": str(jax.devices()[0].platform),
            "device_kind": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
            "jax": jax.__version__, "size": size, "per_stream": per_stream,
            "images_per_step": images, "compile_s": compile_s, "median_step_s": median,
            "step_s": spread(round_medians),
            "images_per_s": images / median,
            "images_per_s_spread": spread([images / t for t in round_medians])}


def run_torch_reference(python: str, reference: str, size: int, per_stream: int,
                        num_steps: int, warmup: int, threads: int = 0, device: str = "cpu",
                        repeats: int = 1) -> dict:
    """The PyTorch reference, once per round (its own process); median and spread."""
    if not pathlib.Path(reference).is_file():
        raise SystemExit(f"--torch-reference {reference}: no such file; give the path of "
                         "torch_reference.py")
    cmd = [python, reference, "--size", str(size), "--per-stream", str(per_stream),
           "--steps", str(num_steps), "--warmup", str(warmup), "--device", device]
    if threads:
        cmd += ["--threads", str(threads)]
    rounds = []
    for _ in range(repeats):
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"the torch reference failed ({' '.join(cmd)}): "
                             f"{out.stderr.strip().splitlines()[-1:]}")
        rounds.append(json.loads(out.stdout.strip().splitlines()[-1]))
    medians = [r["median_step_s"] for r in rounds]
    median = statistics.median(medians)
    images = rounds[0]["images_per_step"]
    return {**rounds[0], "median_step_s": median, "step_s": spread(medians),
            "images_per_s": images / median,
            "images_per_s_spread": spread([images / t for t in medians])}


def torch_device() -> str:
    """The reference runs where JAX runs: cuda on a GPU backend, else cpu. Asked in a child
    process, so that this one holds no accelerator memory while the reference runs."""
    backend = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                             capture_output=True, text=True, check=True).stdout.split()[-1]
    return "cuda" if backend == "gpu" else "cpu"


def add_torch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--torch-python", default="",
                        help="python of an environment with torch, to run the reference")
    parser.add_argument("--torch-reference", default="",
                        help="path of torch_reference.py (the original's step in PyTorch)")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch.set_num_threads (0 = torch's default, all cores)")


def check_torch_arguments(args) -> None:
    if bool(args.torch_python) != bool(args.torch_reference):
        raise SystemExit("--torch-python and --torch-reference go together: give both (the "
                         "python with torch and the path of torch_reference.py) or neither")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--per-stream", type=int, default=10)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (median and spread)")
    parser.add_argument("--dtype", nargs="+", default=["float32"],
                        choices=("float32", "bfloat16"), help="config.model.dtype(s) to time")
    parser.add_argument("--all-images", action="store_true",
                        help="also time the original's decode-all-images variant (float32)")
    add_torch_arguments(parser)
    args = parser.parse_args()
    check_torch_arguments(args)
    ref = None
    if args.torch_python:  # first, in its own processes, before this one computes anything
        ref = run_torch_reference(args.torch_python, args.torch_reference, args.size,
                                  args.per_stream, args.steps, args.warmup, args.torch_threads,
                                  torch_device(), args.repeats)
    timing = lambda dtype, all_images=False: time_jax_step(
        args.size, args.per_stream, args.steps, args.warmup, all_images, dtype, args.repeats)
    runs = {dtype: timing(dtype) for dtype in args.dtype}
    result = dict(runs[args.dtype[0]])
    if len(runs) > 1:
        result["by_dtype"] = runs
    if args.all_images:
        naive = timing("float32", True)
        result["all_images_median_step_s"] = naive["median_step_s"]
        result["all_images_images_per_s"] = naive["images_per_s"]
    if ref is not None:
        result["torch_reference"] = ref
        result["speedup_vs_torch"] = {dtype: r["images_per_s"] / ref["images_per_s"]
                                      for dtype, r in runs.items()}
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
