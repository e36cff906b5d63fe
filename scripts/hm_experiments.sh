#!/usr/bin/env bash
# Reproduce the H&M comparison table: build the dataset, train CLIK (three query variants) and
# the three baselines in locked-tower mode, evaluate each on the test split, write the report.
#   bash scripts/hm_experiments.sh [RAW_DIR] [WORK_DIR] [extra `clik train` args...]
set -euo pipefail
RAW=${1:-../shared/data/hm}
WORK=${2:-runs/hm}
shift $(( $# > 2 ? 2 : $# )) || true
CLIK=${CLIK:-.venv/bin/clik}
CACHE=${CACHE:-.cache/features}
mkdir -p "$WORK"
[ -f "$WORK/data/exhibitions.jsonl" ] || "$CLIK" data hm "$RAW" "$WORK/data"
for run in clik:group clik:virtual clik:topic triplet:group pairwise:group pointwise:group; do
  method=${run%%:*}; query=${run##*:}
  name=$method; [ "$method" = clik ] && name=clik-$query
  start=$(date +%s)
  "$CLIK" train --data "$WORK/data" --config configs/hm-locked.yaml --out "$WORK/$name" \
    --method "$method" --query "$query" --set cache_dir="$CACHE" "$@"
  echo "$name trained in $(( $(date +%s) - start )) s" | tee -a "$WORK/timings.txt"
  "$CLIK" evaluate "$WORK/$name" "$WORK/data" --split test --json "$WORK/$name/eval.json"
done
"$CLIK" report "$WORK"/clik-group/eval.json "$WORK"/clik-virtual/eval.json "$WORK"/clik-topic/eval.json \
  "$WORK"/triplet/eval.json "$WORK"/pairwise/eval.json "$WORK"/pointwise/eval.json --out "$WORK/report"
