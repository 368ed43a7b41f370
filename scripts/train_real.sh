#!/usr/bin/env bash
# Real chest X-rays: trains the recipe of configs/shared_real.py into OUT/multimix, evaluates
# it (validation, shifted validation) and writes OUT/table.md. With BASELINES=1 it also trains
# the fully supervised single-task baselines under the same step budget (Enc with the same 100
# labels, U-Net with the same 10 masks) into OUT/enc and OUT/unet, for the same table.
#
#   MULTIMIX_DATA_ROOT=DIR bash scripts/train_real.sh [OUT=runs/real] [--config.FIELD=VALUE ...]
#
# DIR holds kermany_pneumonia_224/train/{NORMAL,PNEUMONIA} and lung_masks_openist/{images,masks};
# without MULTIMIX_DATA_ROOT a shared/data folder beside the checkout is used if there is one.
set -euo pipefail
OUT=${1:-runs/real}
shift || true
PY=${PYTHON:-python}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${MULTIMIX_DATA_ROOT:-}" ] && [ -d "$here/../shared/data" ]; then
  export MULTIMIX_DATA_ROOT="$here/../shared/data"
fi
if [ -z "${MULTIMIX_DATA_ROOT:-}" ]; then
  echo "error: set MULTIMIX_DATA_ROOT to the folder holding kermany_pneumonia_224/ and lung_masks_openist/" >&2
  exit 2
fi
variants="multimix"
[ "${BASELINES:-0}" = "1" ] && variants="multimix enc unet"
mkdir -p "$OUT"
for variant in $variants; do
  start=$(date +%s)
  "$PY" -m multimix_jax.main --config "$here/configs/shared_real.py:$variant" --workdir "$OUT/$variant" "$@"
  echo "$variant $(( $(date +%s) - start ))" >> "$OUT/wall_seconds.txt"
done
"$PY" "$here/scripts/collect_results.py" $(for v in $variants; do echo "$OUT/$v"; done) | tee "$OUT/table.md"
