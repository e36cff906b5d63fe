#!/usr/bin/env bash
# H&M with multilingual-e5-small beside all-MiniLM-L6-v2 as the text tower, on the three group
# splits of scripts/hm_split_seeds.sh (--test-frac 0.3, split seeds 1..3), locked towers.
# Both towers are trained and evaluated in the same run, so the comparison uses one code state.
#   bash scripts/hm_e5.sh [RAW_DIR] [WORK_DIR]
# Runs niced: the machine is shared. Each e5 checkpoint is about 0.5 GB (the word table).
set -euo pipefail
RAW=${1:-../shared/data/hm}
WORK=${2:-runs/hm-e5}
CLIK=${CLIK:-.venv/bin/clik}
CACHE=${CACHE:-.cache/features}
RUNS=${RUNS:-"minilm-group e5-group minilm-topic e5-topic"}
NICE=(nice -n 10)
for seed in 1 2 3; do
  D=$WORK/split$seed
  [ -f "$D/data/exhibitions.jsonl" ] || "${NICE[@]}" "$CLIK" data hm "$RAW" "$D/data" --test-frac 0.3 --seed $seed
  for run in $RUNS; do
    tower=${run%%-*}; query=${run##*-}
    config=configs/hm-locked.yaml; [ "$tower" = e5 ] && config=configs/hm-e5-locked.yaml
    start=$(date +%s)
    "${NICE[@]}" "$CLIK" train --data "$D/data" --config "$config" --out "$D/$run" --query "$query" --set cache_dir="$CACHE"
    "${NICE[@]}" "$CLIK" evaluate "$D/$run" "$D/data" --bootstrap 0 --json "$D/$run/eval.json"
    echo "split$seed $run: $(( $(date +%s) - start )) s (train + evaluate)" | tee -a "$WORK/timings.txt"
  done
done
.venv/bin/python scripts/mean_over_splits.py "$WORK"
