#!/usr/bin/env bash
# What a new site's unlabelled films add (docs/multimix.md, A new site): continues a trained
# run on its own training data for a few steps at a low learning rate, once without and once
# with the site's unlabelled pool in the unlabelled streams (data.cls.unlabeled_extra and
# data.seg.unlabeled_extra), for each seed; evaluates every run on the site's sets and
# compares the two arms of each seed with paired resamples (scripts/compare.py). The arms
# differ only in the pool: same source parameters, steps, schedule and seed; both are evaluated
# at their last step (60), the one validated.
#
#   MULTIMIX_DATA_ROOT=DIR [SEEDS=0,1] bash scripts/site_pool_ablation.sh SOURCE SITE OUT [--config.X=Y ...]
#
# SOURCE: the workdir of a trained run of CONFIG (default configs/shared_real.py; set CONFIG=...
# to change it); SITE: the output of scripts/make_site_proxy.py (pool/, eval/), or any folder
# laid out the same way; SEEDS: comma-separated. Later --config flags override the ones here. Writes OUT/{no_pool,pool}_sSEED/
# (workdirs with results.json) and OUT/compare_sSEED.json, and prints each comparison.
set -euo pipefail
SOURCE=${1:?give the workdir of the trained run}
SITE=${2:?give the site folder (scripts/make_site_proxy.py --out)}
OUT=${3:?give the output folder}
SEEDS=${SEEDS:-0,1}
shift 3
PY=${PYTHON:-python}
here=$(cd "$(dirname "$0")/.." && pwd)
CONFIG=${CONFIG:-$here/configs/shared_real.py}
if [ -z "${MULTIMIX_DATA_ROOT:-}" ] && [ -d "$here/../shared/data" ]; then
  export MULTIMIX_DATA_ROOT="$here/../shared/data"
fi
for part in pool/cls pool/seg eval/seg; do
  [ -d "$SITE/$part" ] || { echo "error: $SITE/$part: no such folder; build the site with scripts/make_site_proxy.py" >&2; exit 2; }
done
evals=()
for d in "$SITE"/eval/cls_prior_*; do evals+=(--eval_cls_folder "site_$(basename "$d" | sed 's/cls_prior_/p/')=$d"); done
evals+=(--eval_seg_folder "site_seg=$SITE/eval/seg")
continued=(--config.init_from="$SOURCE" --config.optim.learning_rate=1e-4
           --config.optim.lr_decay_epochs=0 --config.optim.lr_decay_steps=0 --config.optim.ema_decay=0.9
           --config.train.num_steps=60 --config.train.log_every_steps=10
           --config.train.eval_every_steps=60 --config.train.checkpoint_every_steps=60)
pool=(--config.data.cls.unlabeled_extra="$SITE/pool/cls" --config.data.seg.unlabeled_extra="$SITE/pool/seg")
mkdir -p "$OUT"
for seed in ${SEEDS//,/ }; do
  for arm in no_pool pool; do
    extra=(); [ "$arm" = pool ] && extra=("${pool[@]}")
    start=$(date +%s)
    "$PY" -m multimix_jax.main --config "$CONFIG" --workdir "$OUT/${arm}_s$seed" --config.seed="$seed" \
        "${continued[@]}" "${extra[@]}" "${evals[@]}" "$@"
    echo "${arm}_s$seed $(( $(date +%s) - start ))" >> "$OUT/wall_seconds.txt"
  done
  "$PY" "$here/scripts/compare.py" "$OUT/no_pool_s$seed" "$OUT/pool_s$seed" --json "$OUT/compare_s$seed.json"
done
