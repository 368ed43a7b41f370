#!/usr/bin/env python3
"""Images per second of the MultiMix training step alone, of the whole training loop, and of
the PyTorch reference on the same device, for float32 and bfloat16. Prints one JSON line.

- step: ``bench_step.time_jax_step`` (compile excluded; median and spread over --repeats).
- loop: ``train.train_and_evaluate`` on ``configs/default.py`` at --size for --loop-steps
  steps: its Grain input pipeline (--workers processes), device prefetch, logging, periodic
  validation and checkpoints at the config's cadence. Timed from the end of step
  --loop-warmup (the compile and the pipeline's start-up are before it) to the end of the
  last step, both synchronised on the device; the final validation and checkpoint after the
  last step are not in it.
- torch: the reference script (--torch-python, --torch-reference), float32 only (the script
  has no bfloat16 mode), device cuda when JAX runs on a GPU.

  python scripts/bench_train.py --size 256 --loop-steps 300 --workers 8 \
      --torch-python python3 --torch-reference .bench/torch_reference.py
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
import pathlib
import runpy
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def _bench_step():
    spec = importlib.util.spec_from_file_location("bench_step", REPO / "scripts" / "bench_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StepClock:
    """Wraps the loop's jitted step (``train_and_evaluate(wrap_step=...)``) so that the steps
    are timed where they run: the device is synchronised after step ``warmup`` and after the
    last step."""

    def __init__(self, warmup: int, last: int):
        self.warmup, self.last, self.calls, self.marks = warmup, last, 0, {}

    def wrap(self, step):
        import jax

        def timed(state, batch):
            out = step(state, batch)
            self.calls += 1
            if self.calls in (self.warmup, self.last):
                jax.block_until_ready(out)
                self.marks[self.calls] = time.perf_counter()
            return out

        return timed

    def seconds(self) -> float:
        return self.marks[self.last] - self.marks[self.warmup]


def loop_config(args, dtype: str):
    config = runpy.run_path(str(REPO / "configs" / "default.py"))["get_config"]()
    config.data.image_size, config.model.dtype = args.size, dtype
    config.data.per_stream_batch = args.per_stream
    config.data.worker_count = args.workers
    config.train.num_steps = args.loop_steps
    if args.cls_examples:
        config.data.cls.num_examples = args.cls_examples
    if args.seg_examples:
        config.data.seg.num_examples = args.seg_examples
    return config


def time_training_loop(args, dtype: str) -> dict:
    """The default config's real training loop for ``args.loop_steps`` steps in ``dtype``."""
    from multimix_jax import train

    if args.loop_steps <= args.loop_warmup:
        raise SystemExit(f"--loop-steps {args.loop_steps} must exceed --loop-warmup "
                         f"{args.loop_warmup} (the steps before the clock starts)")
    config = loop_config(args, dtype)
    clock = StepClock(args.loop_warmup, args.loop_steps)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as workdir:
        train.train_and_evaluate(config, workdir, wrap_step=clock.wrap)
    wall = time.perf_counter() - t0
    timed_steps = args.loop_steps - args.loop_warmup
    seconds = clock.seconds()
    images = 5 * args.per_stream
    return {"dtype": dtype, "steps": args.loop_steps, "timed_steps": timed_steps,
            "workers": args.workers, "timed_s": seconds, "step_s": seconds / timed_steps,
            "images_per_s": images * timed_steps / seconds, "wall_s": wall,
            "eval_every_steps": config.train.eval_every_steps,
            "checkpoint_every_steps": config.train.checkpoint_every_steps}


def versions() -> dict:
    import jax

    names = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy")
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = sys.version.split()[0]
    device = jax.devices()[0]
    return {"versions": out, "backend": jax.default_backend(), "device_kind": device.device_kind,
            "num_devices": jax.device_count(), "cpu_count": os.cpu_count()}


def main() -> None:
    bench_step = _bench_step()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--per-stream", type=int, default=10)
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"],
                        choices=("float32", "bfloat16"))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round (step alone)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (median and spread)")
    parser.add_argument("--loop-steps", type=int, default=300,
                        help="training-loop steps (0: skip the loop)")
    parser.add_argument("--loop-warmup", type=int, default=20,
                        help="loop steps before its clock starts (compile, pipeline start-up)")
    parser.add_argument("--workers", type=int, default=0, help="config.data.worker_count")
    parser.add_argument("--cls-examples", type=int, default=0,
                        help="synthetic classification pool (0: the default config's)")
    parser.add_argument("--seg-examples", type=int, default=0,
                        help="synthetic segmentation pool (0: the default config's)")
    bench_step.add_torch_arguments(parser)
    args = parser.parse_args()
    bench_step.check_torch_arguments(args)
    logging.getLogger("multimix_jax").setLevel(logging.WARNING)

    result = {"bench": "train", "size": args.size, "per_stream": args.per_stream,
              "images_per_step": 5 * args.per_stream, **versions()}
    ref = None
    if args.torch_python:  # first, in its own processes, before this one computes anything
        ref = bench_step.run_torch_reference(
            args.torch_python, args.torch_reference, args.size, args.per_stream, args.steps,
            args.warmup, args.torch_threads, bench_step.torch_device(), args.repeats)
    result["step"] = {dtype: bench_step.time_jax_step(
        args.size, args.per_stream, args.steps, args.warmup, False, dtype, args.repeats)
        for dtype in args.dtype}
    if args.loop_steps > 0:
        result["loop"] = {dtype: time_training_loop(args, dtype) for dtype in args.dtype}
    if ref is not None:
        result["torch_reference"] = ref
        result["versions"]["torch"] = ref.get("torch")
        result["step_over_torch"] = {d: r["images_per_s"] / ref["images_per_s"]
                                     for d, r in result["step"].items()}
        if "loop" in result:
            result["loop_over_torch"] = {d: r["images_per_s"] / ref["images_per_s"]
                                         for d, r in result["loop"].items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
