#!/usr/bin/env python3
"""Where the training step's time goes on this machine: runs the jitted step of
``configs/default.py`` under ``jax.profiler``, reads the trace back (``jax.profiler.
ProfileData``) and sums each XLA thunk's time by what it computes (convolution, InstanceNorm,
dropout's random bits, pooling, resizing, the optimizer, ...), by forward or backward pass
and by network part (encoder, decoder, the saliency pass), using the op names XLA keeps in
the compiled HLO. Prints one JSON line (seconds per step, summed over threads).

Work done inside library kernels that run on their own thread-pool regions (YNNPACK's, the
package's CPU default: multimix_jax/xla_cpu.py) is not traced op by op; it is reported as
``untraced_thread_s`` = threads x wall - traced. Run with ``MULTIMIX_XLA_CPU_DEFAULTS=0`` to
see XLA's own kernels op by op.

  python scripts/profile_step.py --size 128 --per-stream 10 --steps 2
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import runpy
import sys
import tempfile
import time
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
KINDS = (("conv_general_dilated", "convolution"), ("InstanceNorm", "instance_norm"),
         ("Dropout", "dropout"), ("leaky_relu", "leaky_relu"), ("reduce_window", "max_pool"),
         ("select_and_scatter", "max_pool"), ("resize", "resize"), ("dot_general", "dot"))


def op_names(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> the JAX op name in its metadata ('' when none)."""
    out = {}
    for line in hlo_text.splitlines():
        head = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = ", line)
        if head:
            name = re.search(r'op_name="([^"]*)"', line)
            out[head.group(1)] = name.group(1) if name else ""
    return out


def classify(thunk: str, op_name: str) -> tuple[str, str, str]:
    """(kind, 'forward'|'backward', part) of one thunk from its op name."""
    kind = next((k for key, k in KINDS if key in op_name), "")
    if not kind:
        kind = "random_bits" if thunk.startswith("wrapped_iota") else (
            "layout_copy" if "transpose_copy" in thunk or thunk.startswith("copy") else "other")
    direction = "backward" if "transpose(" in op_name else "forward"
    part = ("saliency" if "MultiMix.classify" in op_name else "encoder" if "/encoder/" in op_name
            else "decoder" if "/decoder/" in op_name else "optimizer_and_losses")
    return kind, direction, part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--per-stream", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2, help="profiled steps (after 2 warm-up)")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_enable_xprof_traceme=true").strip()
    import jax

    sys.path.insert(0, str(REPO / "scripts"))
    from bench_step import random_batch
    from multimix_jax import sharding, steps
    from multimix_jax import state as train_state

    config = runpy.run_path(str(REPO / "configs" / "default.py"))["get_config"]()
    config.data.image_size, config.data.per_stream_batch = args.size, args.per_stream
    mesh = sharding.make_mesh()
    model, tx, state = train_state.setup(config, mesh, steps_per_epoch=1000)
    batch = sharding.shard_batch(random_batch(args.size, args.per_stream), mesh)
    step = steps.jit_train_step(model, tx, config, mesh)
    names = op_names(step.lower(state, batch).compile().as_text())
    for _ in range(2):
        state, metrics = step(state, batch)
        jax.block_until_ready((state, metrics))
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        start = time.perf_counter()
        for _ in range(args.steps):
            state, metrics = step(state, batch)
            jax.block_until_ready((state, metrics))
        wall = (time.perf_counter() - start) / args.steps
        jax.profiler.stop_trace()
        trace = jax.profiler.ProfileData.from_file(
            sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1])
    by = {key: collections.Counter() for key in ("kind", "direction", "part", "layer")}
    threads = 0
    for plane in trace.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLAEigen"):
                continue
            threads += 1
            for event in line.events:
                if event.name not in names:  # executor, thread-pool and bookkeeping events
                    continue
                seconds = event.duration_ns / 1e9 / args.steps
                kind, direction, part = classify(event.name, names[event.name])
                layer = re.search(r"/((?:encoder|decoder)/ConvBlock_\d)", names[event.name])
                by["kind"][kind] += seconds
                by["direction"][direction] += seconds
                by["part"][part] += seconds
                if kind == "convolution" and layer:
                    by["layer"][f"{layer.group(1)} {direction}"] += seconds
    traced = sum(by["kind"].values())
    threads = max(threads, 1)
    print(json.dumps({
        "size": args.size, "per_stream": args.per_stream, "wall_step_s": wall,
        "threads": threads, "xla_flags": os.environ["XLA_FLAGS"],
        "traced_thread_s": traced, "untraced_thread_s": max(threads * wall - traced, 0.0),
        **{f"by_{key}": dict(sorted(((k, round(v, 4)) for k, v in c.items()),
                                    key=lambda kv: -kv[1])) for key, c in by.items()}}))


if __name__ == "__main__":
    main()
