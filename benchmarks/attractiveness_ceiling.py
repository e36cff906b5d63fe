"""How much of the held-out ranking error is topic fit and how much is attractiveness, and what a
ranking from the products' catalogue attributes reaches: the reference points for CLIK's MRR on
the H&M dev data.

    clik experiment ../shared/data/hm --out runs/hm --seeds 1,2,3 --runs clik-group
    python benchmarks/attractiveness_ceiling.py runs/hm --raw ../shared/data/hm

Reads the per-exhibition rankings that `clik experiment` wrote (split*/<run>/eval.json) and, per
split seed, reports MRR and Top1-Top1 of:

- ``as served``: the run's scores (topic fit included), what the experiment table says;
- ``perfect topic fit``: the same scores with every off-topic product put last, so only the
  attractiveness ranking of the on-topic products is left to get wrong;
- ``catalogue attributes``: no image at all: each on-topic product scored by how well products
  with its colour group, graphical appearance and perceived colour value sold within their own
  exhibitions of the train split (mean sales percentile, shrunk towards 0.5), off-topic products
  last. The kind of prior a merchandiser's rule of thumb ("black sells") gives.
- ``random``: the expected MRR of a random order of the on-topic products (off-topic last).

Ties in the scores are counted pessimistically (clik.metrics computes every figure).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from clik.metrics import evaluate_groups, random_baseline  # noqa: E402

ATTRIBUTES = ("colour_group_name", "graphical_appearance_name", "perceived_colour_value_name")
SHRINK = 10.0  # pseudo-products at percentile 0.5 behind every attribute value


def attribute_prior(exhibitions: list[dict], articles: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per attribute value: mean within-exhibition sales percentile of the train split's on-topic
    products showing it, shrunk towards 0.5 by SHRINK pseudo-products."""
    seen: dict[str, dict[str, list[float]]] = {a: defaultdict(list) for a in ATTRIBUTES}
    for ex in exhibitions:
        if ex["split"] != "train":
            continue
        on = [p for p in ex["products"] if p.get("on_topic", True)]
        sales = np.array([p["criteria"]["sales"] for p in on])
        percentile = (sales[:, None] > sales[None, :]).mean(axis=1)
        for product, q in zip(on, percentile):
            for a in ATTRIBUTES:
                seen[a][articles[product["id"]][a]].append(float(q))
    return {
        a: {v: (sum(qs) + 0.5 * SHRINK) / (len(qs) + SHRINK) for v, qs in values.items()} for a, values in seen.items()
    }


def split_figures(split_dir: Path, run: str, articles: dict[str, dict]) -> dict:
    result = json.loads((split_dir / run / "eval.json").read_text())
    exhibitions = [json.loads(line) for line in (split_dir / "data" / "exhibitions.jsonl").open()]
    prior = attribute_prior(exhibitions, articles)
    rankings: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        "as served": [],
        "perfect topic fit": [],
        "catalogue attributes": [],
    }
    on_topic_labels = []
    for group in result["per_group"]:
        ranking = group["ranking"]
        labels = np.array([r["label"] for r in ranking])
        on = np.array([r["on_topic"] for r in ranking])
        served = np.array([r["score"] for r in ranking])
        # off-topic products last: below every on-topic score (clik.metrics wants finite scores)
        gated = np.where(on, served, served.min() - 1.0)
        attrs = np.array(
            [
                sum(prior[a].get(articles[r["product_id"]][a], 0.5) for a in ATTRIBUTES) if o else -1.0
                for r, o in zip(ranking, on)
            ]
        )
        for name, scores in (("as served", served), ("perfect topic fit", gated), ("catalogue attributes", attrs)):
            rankings[name].append((scores, labels))
        on_topic_labels.append(labels[on])
    figures = {name: evaluate_groups(pairs, ks=(1,)) for name, pairs in rankings.items()}
    figures["random (on-topic first)"] = random_baseline(on_topic_labels, ks=(1,))
    return {name: {"MRR": m.mrr, "Top1-Top1": m.topk_top1[1]} for name, m in figures.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", type=Path, help="an output folder of `clik experiment`")
    ap.add_argument("--raw", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "hm")
    ap.add_argument("--run", default="clik-group")
    ap.add_argument("--json", type=Path, default=None, help="default: <experiment>/ceiling.json")
    args = ap.parse_args()

    import pandas as pd

    table = pd.read_csv(args.raw / "articles.csv", dtype={"article_id": str}, usecols=["article_id", *ATTRIBUTES])
    articles = {row["article_id"]: row for row in table.fillna("").to_dict("records")}
    splits = sorted(p for p in args.experiment.glob("split*") if (p / args.run / "eval.json").exists())
    if not splits:
        raise SystemExit(f"no split*/{args.run}/eval.json under {args.experiment}")
    per_split = {p.name: split_figures(p, args.run, articles) for p in splits}
    names = list(next(iter(per_split.values())))
    print(f"{args.run} on {', '.join(per_split)}: mean over the splits (per split in brackets)")
    print(f"{'ranking':26} {'MRR':>6} {'Top1-Top1':>10}   MRR per split")
    means = {}
    for name in names:
        mrr = [s[name]["MRR"] for s in per_split.values()]
        top1 = [s[name]["Top1-Top1"] for s in per_split.values()]
        means[name] = {"MRR": statistics.mean(mrr), "Top1-Top1": statistics.mean(top1)}
        print(f"{name:26} {means[name]['MRR']:>6.3f} {means[name]['Top1-Top1']:>10.3f}   {[round(m, 3) for m in mrr]}")
    out = args.json or args.experiment / "ceiling.json"
    out.write_text(json.dumps({"run": args.run, "per_split": per_split, "mean": means}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
