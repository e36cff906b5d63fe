#!/usr/bin/env bash
# The H&M comparison repeated over several group splits (--test-frac 0.3, split seeds 1..3), to
# see past the noise of one small test split; prints the mean of each figure per method.
#   bash scripts/hm_split_seeds.sh [RAW_DIR] [WORK_DIR]
set -euo pipefail
RAW=${1:-../shared/data/hm}
WORK=${2:-runs/hm-splits}
CLIK=${CLIK:-.venv/bin/clik}
CACHE=${CACHE:-.cache/features}
for seed in 1 2 3; do
  D=$WORK/split$seed
  [ -f "$D/data/exhibitions.jsonl" ] || "$CLIK" data hm "$RAW" "$D/data" --test-frac 0.3 --seed $seed
  for run in clik-group clik-wm20 clik-virtual clik-topic triplet pairwise pointwise; do
    case $run in
      clik-group) args=() ;;
      clik-wm20) args=(--set w_match=20 --set w_rank=1) ;;
      clik-virtual) args=(--query virtual) ;;
      clik-topic) args=(--query topic) ;;
      *) args=(--method $run) ;;
    esac
    "$CLIK" train --data "$D/data" --config configs/hm-locked.yaml --out "$D/$run" --set cache_dir="$CACHE" "${args[@]}"
    "$CLIK" evaluate "$D/$run" "$D/data" --bootstrap 0 --json "$D/$run/eval.json"
  done
done
.venv/bin/python scripts/mean_over_splits.py "$WORK"
