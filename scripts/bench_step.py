#!/usr/bin/env python3
"""Time the compiled MultiMix training step (compile excluded) and, given a PyTorch venv's
python and the reference script's path, the original's step rebuilt in PyTorch with the same
shapes on the same kind of device (cuda when JAX runs on a GPU). Prints one JSON line.

Each of --repeats rounds runs --warmup untimed then --steps timed steps; a round's figure is
its median step; the result is the median over rounds with their min and max (the spread),
so a busy machine shows up as a wide spread.

--torch-variants also times the reference's step under PyTorch settings a user could turn on
(scripts/torch_variants.py: channels_last, bf16 autocast, torch.compile), one process per
round, like the reference. The step's FLOPs come from XLA's cost analysis of the compiled
program; on a CPU they are set against a nominal peak (``cpu_peak_gflops``).

  python scripts/bench_step.py --size 128 --per-stream 10 --steps 5 --repeats 3 \
      --dtype float32 bfloat16 --torch-python /path/to/torch-venv/bin/python \
      --torch-reference /path/to/torch_reference.py --torch-variants channels_last,compile
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import re
import runpy
import shutil
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
TORCH_VARIANTS = REPO / "scripts" / "torch_variants.py"
FP32_FLOP_PER_CYCLE = {"avx512f": 64, "avx2+fma": 32}  # per core: 2 FMA units x lanes x 2
AMX_BF16_FLOP_PER_CYCLE = 1024  # per core: the AMX-BF16 TMUL's nominal figure
PEAK_ASSUMPTION = ("nominal peak = cores x GHz x FLOP/cycle/core, assuming two FMA units per "
                   "core: float32 64 FLOP/cycle with avx512f (2 x 16 lanes x 2), 32 with "
                   "avx2+fma; bfloat16 1024 FLOP/cycle with amx_bf16 (AMX-BF16 TMUL, "
                   "nominal); GHz as cpu_peak.ghz_source names it (the model name's base clock, "
                   "lscpu's CPU max MHz, or cpuinfo's cpu MHz)")


def spread(values: list[float]) -> dict:
    """Median, min and max of per-round figures."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "rounds": len(values)}


def timed_rounds(call, repeats: int, warmup: int, count: int) -> list[float]:
    """Per round: ``warmup`` untimed then ``count`` timed calls of ``call`` (which waits for
    its result); the round's median seconds per call."""
    round_medians = []
    for _ in range(repeats):
        times = []
        for i in range(warmup + count):
            t0 = time.perf_counter()
            call()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        round_medians.append(statistics.median(times))
    return round_medians


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


def _cpuinfo_field(cpuinfo: str, name: str) -> str | None:
    """The first ``name : value`` of /proc/cpuinfo's text (the first processor's)."""
    match = re.search(rf"^{re.escape(name)}\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    return match.group(1).strip() if match else None


def _read_lscpu() -> str:
    if not shutil.which("lscpu"):
        return ""
    out = subprocess.run(["lscpu"], capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else ""


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_peak_gflops(cpuinfo: str | None = None, lscpu: str | None = None,
                    logical_cpus: int | None = None) -> dict:
    """Nominal peak GFLOP/s of the CPU cores this process may use, from /proc/cpuinfo's flags
    and clock (``cpuinfo``, ``lscpu`` and ``logical_cpus`` stand in for the machine's own).

    Assumes two FMA units per core (64 float32 FLOP/cycle with avx512f, 32 with avx2+fma) and
    AMX-BF16's nominal 1024 bfloat16 FLOP/cycle; cores = usable logical CPUs / threads per
    core; GHz from the model name's "@ x.xxGHz", else lscpu's "CPU max MHz", else "cpu MHz".
    A figure that cannot be derived is None."""
    if cpuinfo is None:
        try:
            cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    lscpu = _read_lscpu() if lscpu is None else lscpu
    logical = logical_cpus or _usable_cpus()
    siblings = _cpuinfo_field(cpuinfo, "siblings")  # logical CPUs per socket
    per_socket = _cpuinfo_field(cpuinfo, "cpu cores")  # cores per socket
    threads_per_core = (max(1, int(siblings) // int(per_socket))
                        if siblings and per_socket and int(per_socket) > 0 else 1)
    cores = max(1, logical // threads_per_core)
    model = _cpuinfo_field(cpuinfo, "model name") or ""
    ghz, source = None, None
    if match := re.search(r"@\s*([\d.]+)\s*GHz", model):
        ghz, source = float(match.group(1)), "model name"
    elif match := re.search(r"^CPU max MHz:\s*([\d.]+)", lscpu, re.MULTILINE):
        ghz, source = float(match.group(1)) / 1000, "lscpu CPU max MHz"
    elif mhz := _cpuinfo_field(cpuinfo, "cpu MHz"):
        ghz, source = float(mhz) / 1000, "cpuinfo cpu MHz"
    flags = set((_cpuinfo_field(cpuinfo, "flags") or "").split())
    isa = ("avx512f" if "avx512f" in flags else
           "avx2+fma" if {"avx2", "fma"} <= flags else None)
    fp32 = cores * ghz * FP32_FLOP_PER_CYCLE[isa] if isa and ghz else None
    amx = cores * ghz * AMX_BF16_FLOP_PER_CYCLE if "amx_bf16" in flags and ghz else None
    return {"float32_gflops": fp32, "bfloat16_amx_nominal_gflops": amx, "cores": cores,
            "threads_per_core": threads_per_core, "ghz": ghz, "ghz_source": source,
            "fp32_isa": isa, "model_name": model or None}


def compiled_flops(jitted, *args) -> float | None:
    """FLOPs of one call of ``jitted`` on ``args`` by XLA's cost analysis of the compiled
    program (a dict; older JAX gave a list of one dict per program); None if not reported."""
    analysis = jitted.lower(*args).compile().cost_analysis()
    parts = analysis if isinstance(analysis, (list, tuple)) else [analysis]
    flops = sum(float((part or {}).get("flops", 0.0)) for part in parts)
    return flops if flops > 0 else None


def achieved(flops: float | None, step_s: float, dtype: str, platform: str) -> dict:
    """GFLOP/s of a step and its fraction of the CPU's nominal peak for ``dtype`` (bfloat16:
    the AMX peak where the CPU has AMX, else the float32 FMA peak); peaks are None off CPU."""
    gflops = flops / step_s / 1e9 if flops else None
    if platform != "cpu":
        return {"flops_per_step": flops, "gflops_per_s": gflops, "peak_gflops": None,
                "peak_fraction": None, "peak_assumption": None, "cpu_peak": None}
    peak = cpu_peak_gflops()
    use = peak["float32_gflops"]
    if dtype == "bfloat16" and peak["bfloat16_amx_nominal_gflops"]:
        use = peak["bfloat16_amx_nominal_gflops"]
    return {"flops_per_step": flops, "gflops_per_s": gflops, "peak_gflops": use,
            "peak_fraction": gflops / use if gflops and use else None,
            "peak_assumption": PEAK_ASSUMPTION, "cpu_peak": peak}


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
    flops = compiled_flops(step, state, batch)  # the call below reuses this compilation
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    current = {"state": state}

    def one_step() -> None:  # the state is donated: each step takes the one before's
        current["state"], metrics = step(current["state"], batch)
        jax.block_until_ready((current["state"], metrics))

    round_medians = timed_rounds(one_step, repeats, warmup, num_steps)
    median = statistics.median(round_medians)
    images = 5 * per_stream
    return {"impl": "multimix_jax" + ("_all_images" if segment_all_images else ""),
            "dtype": dtype, "device": str(jax.devices()[0].platform),
            "device_kind": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
            "jax": jax.__version__, "size": size, "per_stream": per_stream,
            "images_per_step": images, "compile_s": compile_s, "median_step_s": median,
            "step_s": spread(round_medians),
            "images_per_s": images / median,
            "images_per_s_spread": spread([images / t for t in round_medians]),
            **achieved(flops, median, dtype, jax.devices()[0].platform)}


def _torch_variants_module():
    spec = importlib.util.spec_from_file_location("torch_variants", TORCH_VARIANTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports torch only when it times something
    return module


def parse_torch_variants(text: str) -> list[str]:
    """--torch-variants' comma-separated names, checked against scripts/torch_variants.py."""
    known = _torch_variants_module().VARIANTS
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in known]
    if unknown:
        raise SystemExit(f"--torch-variants {text}: unknown {', '.join(unknown)}; expected a "
                         f"comma-separated list of {', '.join(known)}")
    return names


def over_rounds(rounds: list[dict]) -> dict:
    """The first round's fields with the median step over rounds and the spread."""
    medians = [r["median_step_s"] for r in rounds]
    median = statistics.median(medians)
    images = rounds[0]["images_per_step"]
    return {**rounds[0], "median_step_s": median, "step_s": spread(medians),
            "images_per_s": images / median,
            "images_per_s_spread": spread([images / t for t in medians])}


def run_torch(python: str, reference: str, size: int, per_stream: int, num_steps: int,
              warmup: int, threads: int = 0, device: str = "cpu", repeats: int = 1,
              variants: list[str] = ()) -> tuple[dict, dict]:
    """The PyTorch reference and each of ``variants`` (scripts/torch_variants.py), one
    process per round, the reference first in every round: (reference, {variant: result}).
    A variant that fails or reports an error is {"error": ...} and is not run again."""
    if not pathlib.Path(reference).is_file():
        raise SystemExit(f"--torch-reference {reference}: no such file; give the path of "
                         "torch_reference.py")
    shape = ["--size", str(size), "--per-stream", str(per_stream), "--steps", str(num_steps),
             "--warmup", str(warmup), "--device", device]
    shape += ["--threads", str(threads)] if threads else []
    commands = {None: [python, reference, *shape]}
    commands.update({v: [python, str(TORCH_VARIANTS), reference, "--variants", v, *shape]
                     for v in variants})
    rounds = {name: [] for name in commands}
    failed = {}
    for _ in range(repeats):
        for name, cmd in commands.items():
            if name in failed:
                continue
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                why = (out.stderr.strip().splitlines() or ["no message"])[-1]
                if name is None:
                    raise SystemExit(f"the torch reference failed ({' '.join(cmd)}): {why}")
                failed[name] = {"error": f"the {name} variant failed: {why[:300]}"}
                continue
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result = result if name is None else result[name]
            if "error" in result:
                failed[name] = result
            else:
                rounds[name].append(result)
    ref = over_rounds(rounds[None])
    return ref, {v: failed.get(v) or over_rounds(rounds[v]) for v in variants}


def run_torch_reference(python: str, reference: str, size: int, per_stream: int,
                        num_steps: int, warmup: int, threads: int = 0, device: str = "cpu",
                        repeats: int = 1) -> dict:
    """The PyTorch reference, once per round (its own process); median and spread."""
    return run_torch(python, reference, size, per_stream, num_steps, warmup, threads, device,
                     repeats)[0]


def fastest_torch(ref: dict, variants: dict) -> tuple[str, dict]:
    """(name, result) of the fastest working PyTorch run, the original ("reference") included."""
    runs = {"reference": ref, **{k: v for k, v in variants.items() if "error" not in v}}
    name = max(runs, key=lambda k: runs[k]["images_per_s"])
    return name, runs[name]


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


def add_torch_variants_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--torch-variants", default="",
                        help="also time the reference under these comma-separated settings of "
                             "scripts/torch_variants.py (fp32, channels_last, bf16_autocast, "
                             "bf16_autocast_channels_last, compile); default: none")


def check_torch_arguments(args) -> None:
    if bool(args.torch_python) != bool(args.torch_reference):
        raise SystemExit("--torch-python and --torch-reference go together: give both (the "
                         "python with torch and the path of torch_reference.py) or neither")
    if getattr(args, "torch_variants", "") and not args.torch_python:
        raise SystemExit("--torch-variants needs --torch-python and --torch-reference (the "
                         "variants run the reference's step)")


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
    add_torch_variants_argument(parser)
    args = parser.parse_args()
    check_torch_arguments(args)
    variants = parse_torch_variants(args.torch_variants)
    ref = None
    if args.torch_python:  # first, in its own processes, before this one computes anything
        ref, torch_variants = run_torch(
            args.torch_python, args.torch_reference, args.size, args.per_stream, args.steps,
            args.warmup, args.torch_threads, torch_device(), args.repeats, variants)
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
        if variants:
            best_name, best = fastest_torch(ref, torch_variants)
            result["torch_variants"] = torch_variants
            result["torch_best"] = best_name
            result["speedup_vs_torch_best"] = {dtype: r["images_per_s"] / best["images_per_s"]
                                               for dtype, r in runs.items()}
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
