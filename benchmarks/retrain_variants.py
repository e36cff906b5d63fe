"""Which retraining on logged events beats the model that served? Variants measured on the logs
of one `closed_loop.py` run, each over several training seeds.

    python benchmarks/closed_loop.py --quick --workdir W ...      # serves, logs, writes W/ctr-data
    python benchmarks/retrain_variants.py W [--seeds 0 1 2] [--json PATH]

Every variant trains on the same logged CTR labels of the train exhibitions (`W/ctr-data`, what
`clik data events` made of the day files; the held-out exhibitions' clicks left out) and is
measured like closed_loop.py measures: MRR on the held-out exhibitions against the hidden click
probabilities of the simulation. Variants:

    scratch      fresh projections, CTR labels only (what closed_loop.py measured first)
    warm         the served model fine-tuned on the CTR labels (init_from)
    warm-lr3e-4  the same with a third of the step size
    mixed        fresh, CTR labels plus the sales the first model learnt from (its exhibitions):
                 `clik data events --with-labels`
    warm-mixed   warm start and mixed labels (the retraining cycle, docs/experiments.md)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.closed_loop import _random_mrr, hidden_ctr, mrr, subset, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path, help="a closed_loop.py --workdir after its run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=float, default=12.0, help="retraining epochs (closed_loop --quick: 12)")
    ap.add_argument("--variants", nargs="+")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from training.data.events import with_original_labels
    from training.data.format import load_dataset, write_dataset

    work = args.workdir
    dataset, seed_data, logged = (load_dataset(work / d) for d in ("data", "seed-data", "ctr-data"))
    ctr = hidden_ctr(dataset)
    test_ids = {ex.id for ex in dataset.split("test")}
    cache, eval_dir, served = work / "features", work / "eval-data", work / "run-served"
    out_dir = work / "variants"
    ctr_dir, mixed_dir = out_dir / "ctr-train", out_dir / "mixed-train"
    kept = subset(logged, lambda ex: ex.id not in test_ids and ex.id != "bench")
    write_dataset(kept, ctr_dir)
    write_dataset(with_original_labels(kept, seed_data), mixed_dir)  # what `clik data events --with-labels` writes
    variants = {
        "scratch": (ctr_dir, {}),
        "warm": (ctr_dir, {"init_from": str(served)}),
        "warm-lr3e-4": (ctr_dir, {"init_from": str(served), "lr": 3e-4}),
        "mixed": (mixed_dir, {}),
        "warm-mixed": (mixed_dir, {"init_from": str(served)}),
    }
    chosen = args.variants or list(variants)
    result: dict = {
        "workdir": str(work),
        "seeds": args.seeds,
        "epochs": args.epochs,
        "served": mrr(served, eval_dir, cache),
        "random": float(np.mean([_random_mrr(ex, ctr) for ex in dataset.exhibitions if ex.id in test_ids])),
        "held_out": len(test_ids),
        "variants": {},
    }
    print(
        f"held-out MRR: served {result['served']:.3f}, random {result['random']:.3f} ({len(test_ids)} exhibitions)",
        flush=True,
    )
    for name in chosen:
        data_dir, overrides = variants[name]
        figures = []
        for seed in args.seeds:
            started = time.monotonic()
            run = train(data_dir, out_dir / f"{name}-s{seed}", cache, args.epochs, seed=seed, **overrides)
            figures.append(mrr(run, eval_dir, cache))
            print(f"{name} seed {seed}: MRR {figures[-1]:.3f} ({time.monotonic() - started:.0f}s)", flush=True)
        result["variants"][name] = {
            "mrr": figures,
            "mean": float(np.mean(figures)),
            "std": float(np.std(figures)),
            "beats_served": int(sum(f > result["served"] for f in figures)),
        }
    print(
        f"\n{'variant':<14}{'mean MRR':>9}{'sd':>7}  per seed  (served {result['served']:.3f}, random "
        f"{result['random']:.3f})"
    )
    for name, v in result["variants"].items():
        print(f"{name:<14}{v['mean']:>9.3f}{v['std']:>7.3f}  {' '.join(f'{m:.3f}' for m in v['mrr'])}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
