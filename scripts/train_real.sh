#!/usr/bin/env bash
# Real chest X-rays (../shared/data): MultiMix and the fully supervised single-task baselines
# (Enc with the same 100 labels, U-Net with the same 10 masks) under the same step budget,
# then one table of VALIDATION figures. Each run writes its checkpoint, results.json,
# results.md and example PNGs (examples/: input | saliency | overlay) to OUT/<variant>.
#
#   bash scripts/train_real.sh [OUT=runs/real] [--config.FIELD=VALUE ...]
set -euo pipefail
OUT=${1:-runs/real}
shift || true
PY=${PYTHON:-python}
mkdir -p "$OUT"
for variant in multimix enc unet; do
  start=$(date +%s)
  "$PY" -m multimix_jax.main --config "configs/shared_real.py:$variant" --workdir "$OUT/$variant" "$@"
  echo "$variant $(( $(date +%s) - start ))" >> "$OUT/wall_seconds.txt"
done
"$PY" scripts/collect_results.py "$OUT/multimix" "$OUT/enc" "$OUT/unet" | tee "$OUT/table.md"
