"""Mean of each figure per run over the split folders of WORK_DIR (split*/RUN/eval.json), as a
markdown table, also written to WORK_DIR/summary.json. Used by hm_split_seeds.sh and hm_e5.sh.

    python scripts/mean_over_splits.py runs/hm-splits
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

COLS = ["MRR", "Top1-Top1", "Top3-Top1", "Top5-Top1", "offtopic@1", "offtopic@10"]

work = Path(sys.argv[1])
rows = defaultdict(list)
for path in sorted(work.glob("split*/*/eval.json")):
    r = json.loads(path.read_text())
    rows[path.parent.name].append(r["metrics"])
    rows["random"].append(r["random"])  # once per run evaluated: the same split's random row
n_runs = len(rows) - 1
print("| run | splits | " + " | ".join(COLS) + " |")
print("|---" * (len(COLS) + 2) + "|")
for name, ms in rows.items():
    n = len(ms) if name != "random" else len(ms) // max(n_runs, 1)
    print(f"| {name} | {n} | " + " | ".join(f"{sum(m[c] for m in ms) / len(ms):.4f}" for c in COLS) + " |")
out = work / "summary.json"
out.write_text(json.dumps({k: {c: sum(m[c] for m in v) / len(v) for c in COLS} for k, v in rows.items()}, indent=2))
print(f"wrote {out}")
