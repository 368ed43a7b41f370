#!/usr/bin/env bash
# The one accelerator benchmark: step alone (float32, bfloat16), the PyTorch reference on the
# same device, the whole training loop of configs/default.py (float32, bfloat16) and the Grain
# input pipeline with 0/8/14 worker processes, at 256 px, in one run.
#
# Before the device call, in the checkout (once):
#   bash scripts/gpu_bench.sh --prepare PATH/torch_reference.py
# copies the reference into the git-ignored .bench/ (carry it, and .whl/ from the machine's
# prepare.sh). Then, on the device machine, in the repository root:
#   bash scripts/gpu_bench.sh
# Results: $OUT/bench_train.json, $OUT/bench_input.json and a markdown table on stdout.
# Knobs (environment): SIZE=256 STEPS=20 REPEATS=3 LOOP_STEPS=300 LOOP_WORKERS=8
#   WORKERS="0 8 14" BATCHES=300 INPUT_REPEATS=2 CLS_EXAMPLES=800 SEG_EXAMPLES=160
#   OUT=bench_out (an exported OUT, as on the device machine, is kept)
#   PYTHON=python3 TORCH_PYTHON=$PYTHON TORCH_REFERENCE=.bench/torch_reference.py
# A CPU check of the script itself: SIZE=32 STEPS=3 bash scripts/gpu_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
    [[ -f "${2:-}" ]] || { echo "gpu_bench.sh --prepare needs the path of torch_reference.py" >&2; exit 2; }
    mkdir -p .bench && cp "$2" .bench/torch_reference.py
    echo "copied $2 to .bench/ (git-ignored); carry .bench and .whl in the device call"
    exit 0
fi

SIZE=${SIZE:-256}
STEPS=${STEPS:-20}
REPEATS=${REPEATS:-3}
LOOP_STEPS=${LOOP_STEPS:-300}
LOOP_WORKERS=${LOOP_WORKERS:-8}
WORKERS=${WORKERS:-"0 8 14"}
BATCHES=${BATCHES:-300}  # many: the in-process prefetch buffers batches during the warm-up
CLS_EXAMPLES=${CLS_EXAMPLES:-800}
SEG_EXAMPLES=${SEG_EXAMPLES:-160}
PYTHON=${PYTHON:-python3}
TORCH_PYTHON=${TORCH_PYTHON:-$PYTHON}
OUT=${OUT:-bench_out}
TORCH_REFERENCE=${TORCH_REFERENCE:-.bench/torch_reference.py}
if [[ "$SIZE" -le 64 ]]; then  # a check of the script: few steps, no wait on a loop
    LOOP_STEPS=6; LOOP_WORKERS=1; BATCHES=4; REPEATS=2
fi
INPUT_REPEATS=${INPUT_REPEATS:-2}
mkdir -p "$OUT"

# The GPU image lacks grain, clu, ml_collections, ...: install the carried wheels.
if ! "$PYTHON" -c "import grain, clu, ml_collections" 2>/dev/null; then
    [[ -d .whl ]] || { echo "grain/clu/ml_collections are missing and there is no .whl/ to install them from" >&2; exit 2; }
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
# One compilation cache for all the processes below (the loop reuses the step's program).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/multimix_jax_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

torch_args=()
if [[ -f "$TORCH_REFERENCE" ]] && "$TORCH_PYTHON" "$TORCH_REFERENCE" --help >/dev/null 2>&1; then
    torch_args=(--torch-python "$TORCH_PYTHON" --torch-reference "$TORCH_REFERENCE")
else
    echo "$TORCH_REFERENCE is missing or does not run under $TORCH_PYTHON (no torch?): the PyTorch reference is skipped" >&2
fi

start=$SECONDS
"$PYTHON" scripts/bench_train.py --size "$SIZE" --steps "$STEPS" --warmup 3 --repeats "$REPEATS" \
    --loop-steps "$LOOP_STEPS" --loop-warmup $(( LOOP_STEPS / 10 > 2 ? LOOP_STEPS / 10 : 2 )) \
    --workers "$LOOP_WORKERS" --cls-examples "$CLS_EXAMPLES" --seg-examples "$SEG_EXAMPLES" \
    "${torch_args[@]}" > "$OUT/bench_train.json"
echo "bench_train: $(( SECONDS - start )) s" >&2
step_rate=$("$PYTHON" -c "import json,sys; print(json.load(open(sys.argv[1]))['step']['float32']['images_per_s'])" "$OUT/bench_train.json")
# shellcheck disable=SC2086
"$PYTHON" scripts/bench_input.py --size "$SIZE" --workers $WORKERS --batches "$BATCHES" \
    --repeats "$INPUT_REPEATS" \
    --cls-examples "$CLS_EXAMPLES" --seg-examples "$SEG_EXAMPLES" \
    --step-images-per-s "$step_rate" --out "$OUT/bench_input.json" > /dev/null
echo "bench_input: $(( SECONDS - start )) s in all" >&2

"$PYTHON" - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
train = json.loads((out / "bench_train.json").read_text())
pipe = json.loads((out / "bench_input.json").read_text())
rows = [(f"step alone, {d}, 5x{train['per_stream']}", r["images_per_s"],
         f"{r['images_per_s_spread']['min']:,.0f}-{r['images_per_s_spread']['max']:,.0f}")
        for d, r in train["step"].items()]
ref = train.get("torch_reference")
if ref:
    rows.append((f"PyTorch reference ({ref['device']}), float32", ref["images_per_s"],
                 f"{ref['images_per_s_spread']['min']:,.0f}-{ref['images_per_s_spread']['max']:,.0f}"))
rows += [(f"whole loop, {d}, {r['workers']} workers, {r['timed_steps']} steps", r["images_per_s"], "")
         for d, r in train.get("loop", {}).items()]
rows += [(f"Grain pipeline, {w} workers", r["images_per_s"], "")
         for w, r in pipe["pipeline"].items()]
print(f"{train['device_kind']} ({train['backend']}), {train['size']} px, jax "
      f"{train['versions']['jax']}")
print("| what | images/s | spread (min-max over rounds) |\n|---|---|---|")
for what, rate, spread in rows:
    print(f"| {what} | {rate:,.0f} | {spread} |")
if ref:
    print("step / torch:", {d: round(v, 2) for d, v in train["step_over_torch"].items()},
          "| loop / torch:", {d: round(v, 2) for d, v in train.get("loop_over_torch", {}).items()})
PY
