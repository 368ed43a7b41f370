#!/usr/bin/env python3
"""Time the PyTorch reference's own ``train_step`` under settings a PyTorch user could turn on,
each in a fresh process (run by the python of an environment with torch; the reference script
stays outside this repository). Prints one JSON line: {variant: {median_step_s, images_per_s,
...}} or {variant: {"error": "..."}} for a variant that cannot run here.

- fp32: as the reference's main() runs it.
- channels_last: model and input tensors in torch.channels_last.
- bf16_autocast: torch.autocast(device, bfloat16) around the call of ``train_step`` (its
  forward, saliency pass and losses; the backward follows the forward's dtypes, and Adam's
  update is no autocast op).
- bf16_autocast_channels_last: both.
- compile: torch.compile(model); its compilation is one extra untimed step (``compile_s``).

  /path/to/torch-venv/bin/python scripts/torch_variants.py /path/to/torch_reference.py \
      --variants fp32,channels_last,bf16_autocast --size 128 --per-stream 10 --steps 5
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import subprocess
import sys
import time

VARIANTS = ("fp32", "channels_last", "bf16_autocast", "bf16_autocast_channels_last", "compile")


def load_reference(path: str):
    """The reference script as a module (its ``MultiMixRef`` and ``train_step``)."""
    spec = importlib.util.spec_from_file_location("torch_reference", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a python file; give the path of torch_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_sentence(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else 'no message'}"


def time_variant(ref, variant: str, args) -> dict:
    """Median step of ``ref.train_step`` under ``variant``, on the tensors the reference's
    main() builds (same seed, shapes and optimizer)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    n = args.per_stream
    model = ref.MultiMixRef().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(5 * n, 1, args.size, args.size, device=dev)
    masks = (torch.rand(n, 1, args.size, args.size, device=dev) > 0.5).float()
    labels = torch.randint(0, 2, (n,), device=dev)
    if "channels_last" in variant:
        model = model.to(memory_format=torch.channels_last)
        x, masks = (t.contiguous(memory_format=torch.channels_last) for t in (x, masks))
    autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) \
        if "bf16_autocast" in variant else contextlib.nullcontext
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step() -> float:
        sync()
        t0 = time.perf_counter()
        with autocast():
            ref.train_step(model, opt, (x, masks, labels), n)
        sync()
        return time.perf_counter() - t0

    out = {}
    if variant == "compile":
        model = torch.compile(model)
        try:
            out["compile_s"] = step()
        except Exception as error:  # inductor without a C compiler, an unsupported op, ...
            return {"error": f"torch.compile failed: {one_sentence(error)}"}
    times = [step() for _ in range(args.warmup + args.steps)][args.warmup:]
    median = statistics.median(times)
    return {"impl": "torch_reference", "variant": variant, "device": str(dev),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "size": args.size,
            "per_stream": n, "images_per_step": 5 * n, "median_step_s": median,
            "min_step_s": min(times), "images_per_s": 5 * n / median, **out}


def in_fresh_process(variant: str, args) -> dict:
    """``variant`` timed by this script in a child process of its own."""
    cmd = [sys.executable, __file__, args.reference, "--variants", variant,
           "--size", str(args.size), "--per-stream", str(args.per_stream),
           "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["no message"]
        return {"error": f"the {variant} process failed: {tail[0][:300]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])[variant]


def parse_variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise SystemExit(f"--variants {text}: expected a comma-separated list of "
                         f"{', '.join(VARIANTS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", help="path of torch_reference.py")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, of: " + ", ".join(VARIANTS))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--per-stream", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: all)")
    parser.add_argument("--device", default="", help="cpu or cuda (default: cuda when present)")
    args = parser.parse_args()
    variants = parse_variants(args.variants)
    if len(variants) > 1:  # each in a fresh process of its own
        print(json.dumps({v: in_fresh_process(v, args) for v in variants}))
        return
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(json.dumps({variants[0]: time_variant(load_reference(args.reference), variants[0],
                                                args)}))


if __name__ == "__main__":
    main()
