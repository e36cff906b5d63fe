"""Topic-fit variants on trained runs, nothing retrained: how each way of combining appeal with
topic fit ranks the held-out exhibitions of several split seeds.

    python scripts/topic_fit_variants.py runs/hm-splits [RUN_NAME] [--json OUT]

For every split*/RUN the test exhibitions (topic groups never seen in training) are scored with:
  appeal      CLIK's ranking score alone (the service before topic fit)
  gate-rule   uncalibrated gate: flagged when the topic or centre similarity is 3 robust SDs low,
              flagged products last, the others by appeal
  gate-fit    calibrated gate (clik.topic_fit.fit on the run's TRAIN exhibitions), then appeal
  context     appeal + 3 * context (mean of centre and neighbour similarity), no flag
  service     clik.topic_fit.score_products: context and the calibrated flag (what serves)
Figures: MRR, Top1-Top1, off-topic@1/@10, and for the flags AUC, precision, recall. Means over
the splits; 95% intervals by bootstrap over the exhibitions of all splits pooled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clik.metrics import reciprocal_rank, top1_true_rank  # noqa: E402
from clik.topic_fit import FEATURES, TopicFit, context, fit, product_features, score_products  # noqa: E402
from training.evaluate import auc, load_groups  # noqa: E402


def per_group(groups, variant, calibration):
    no_context = TopicFit(**{**calibration.__dict__, "context_weight": 0.0})
    rows = []
    for g in groups:
        appeal = g.vectors @ g.query
        feats = product_features(g.vectors, g.topic_emb)
        off = ~g.on_topic
        p = None
        if variant == "appeal":
            score, flag = appeal, np.zeros(len(appeal), bool)
        elif variant == "gate-rule":
            z_topic, z_centre = feats[:, FEATURES.index("topic_z")], feats[:, FEATURES.index("centre_z")]
            flag = (z_topic < -3) | (z_centre < -3)
            score = appeal - 16 * flag
        elif variant == "context":
            score, flag = appeal + calibration.context_weight * context(feats), np.zeros(len(appeal), bool)
        else:
            scored = score_products(appeal, feats, no_context if variant == "gate-fit" else calibration)
            score, flag, p = scored.score, scored.off_topic, scored.topic_fit
        order = np.argsort(-score, kind="stable")
        rows.append(
            {
                "rr": reciprocal_rank(score, g.labels),
                "t1": float(top1_true_rank(score, g.labels) == 1),
                "off1": float(off[order[0]]),
                "off10": float(off[order[:10]].mean()),
                "flag": flag,
                "off": off,
                "p": p,
            }
        )
    return rows


def summary(rows) -> dict:
    flags = np.concatenate([r["flag"] for r in rows])
    off = np.concatenate([r["off"] for r in rows])
    out = {k: float(np.mean([r[k] for r in rows])) for k in ("rr", "t1", "off1", "off10")}
    out["precision"] = float(off[flags].mean()) if flags.any() else float("nan")
    out["recall"] = float(flags[off].mean()) if flags.any() else float("nan")
    if rows[0]["p"] is not None:
        out["auc"] = auc(-np.concatenate([r["p"] for r in rows]), off)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("run", nargs="?", default="clik-group")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    variants = ["appeal", "gate-rule", "gate-fit", "context", "service"]
    per_split = {v: [] for v in variants}
    pooled = {v: [] for v in variants}
    for run in sorted(args.work.glob(f"split*/{args.run}")):
        data = run.parent / "data"
        train = load_groups(run, data, split="train")
        test = load_groups(run, data, split="test")
        calibration = fit(
            [product_features(g.vectors, g.topic_emb) for g in train.groups], [g.on_topic for g in train.groups]
        )
        for v in variants:
            rows = per_group(test.groups, v, calibration)
            per_split[v].append(summary(rows))
            pooled[v] += rows
        print(
            f"{run}: {len(test.groups)} test exhibitions; calibration {calibration.weights} {calibration.bias:+.2f}",
            file=sys.stderr,
        )
    rng = np.random.default_rng(0)
    table = {}
    keys = ["rr", "t1", "off1", "off10", "precision", "recall", "auc"]
    for v in variants:
        mean = {k: float(np.nanmean([s.get(k, np.nan) for s in per_split[v]])) for k in keys}
        draws = {k: [] for k in keys}
        rows = pooled[v]
        for _ in range(args.bootstrap):
            sample = summary([rows[i] for i in rng.integers(0, len(rows), len(rows))])
            for k in keys:
                draws[k].append(sample.get(k, np.nan))
        ci = {k: [float(np.nanpercentile(d, 2.5)), float(np.nanpercentile(d, 97.5))] for k, d in draws.items()}
        table[v] = {"mean": mean, "ci95": ci}
    names = {
        "rr": "MRR",
        "t1": "Top1-Top1",
        "off1": "off-topic@1",
        "off10": "off-topic@10",
        "precision": "flag precision",
        "recall": "flag recall",
        "auc": "AUC",
    }
    print("| variant | " + " | ".join(names[k] for k in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for v in variants:
        cells = []
        for k in keys:
            m, (lo, hi) = table[v]["mean"][k], table[v]["ci95"][k]
            cells.append("–" if np.isnan(m) else f"{m:.3f} [{lo:.3f}, {hi:.3f}]")
        print(f"| {v} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
