"""Offline evaluation with the paper's protocol (4.3): N = 1 group at a time, K = 50 images.

Groups larger than K are sampled down with a fixed seed, so every model sees the same images.
Scores are computed the way the service computes them: the eval-transform image features
through the image projection, the topic through the text side's ranking query, cosine (the
appeal), then clik.topic_fit.score_products with the run's calibration (topic fit, context,
the off-topic flag). Besides MRR and TopK-Top1 (with bootstrap confidence intervals over
groups) it reports topic-fit figures the paper shows only as pictures: off-topic@1 and
off-topic@10, the share of off-topic products among the top 1 and top 10, and how well the
off-topic flag finds them (AUC of topic_fit, precision and recall of the flag). The same figures
for the appeal alone (CLIK's ranking score, no topic fit) are under "appeal_only". Under
"diversity": distinct families (product attrs.family; a product without one is its own) and
mean pairwise image cosine in the top 5, of the plain ranking and of the service's diverse
selection (clik.diverse), and how often the diverse first pick is the plain one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import clik
from clik.checkpoint import checkpoint_dir
from clik.metrics import TOPK, random_baseline, reciprocal_rank, top1_true_rank
from clik.diverse import DiverseOptions, diversity_figures, select_diverse
from clik.topic_fit import DEFAULT_FIT, ScoredProducts, product_features, score_products

from .data.format import load_dataset
from .prepare import prepare_split, split_features, without_groups


@dataclass
class GroupResult:
    exhibition_id: str
    rr: float
    top1_true_rank: int
    offtopic_at1: float
    offtopic_at10: float
    offtopic_share: float
    labels: np.ndarray
    on_topic: np.ndarray
    scores: np.ndarray
    images: list[str]
    product_ids: list[str]
    appeal: np.ndarray | None = None
    topic_fit: np.ndarray | None = None
    flagged: np.ndarray | None = None
    topic: dict | None = None


def _summaries(results: list[GroupResult], ks=TOPK) -> dict[str, float]:
    rr = np.array([r.rr for r in results])
    first = np.array([r.top1_true_rank for r in results])
    out = {"MRR": float(rr.mean())}
    for k in ks:
        out[f"Top{k}-Top1"] = float((first <= k).mean())
    out["offtopic@1"] = float(np.mean([r.offtopic_at1 for r in results]))
    out["offtopic@10"] = float(np.mean([r.offtopic_at10 for r in results]))
    if results and results[0].topic_fit is not None:
        out.update(flag_figures(results))
    return out


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (NaN when one class is missing)."""
    from sklearn.metrics import roc_auc_score

    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))


def flag_figures(results: list[GroupResult]) -> dict[str, float]:
    """How well the off-topic flag finds the off-topic products (pooled over groups)."""
    off = ~np.concatenate([r.on_topic for r in results])
    flagged = np.concatenate([r.flagged for r in results])
    fit = np.concatenate([r.topic_fit for r in results])
    return {
        "offtopic_auc": auc(-fit, off),
        "flag_precision": float(off[flagged].mean()) if flagged.any() else float("nan"),
        "flag_recall": float(flagged[off].mean()) if off.any() else float("nan"),
    }


def bootstrap(results: list[GroupResult], samples: int, seed: int) -> dict[str, list[float]]:
    """95% percentile intervals, resampling groups with replacement."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(samples):
        pick = rng.integers(0, len(results), len(results))
        for key, value in _summaries([results[i] for i in pick]).items():
            draws.setdefault(key, []).append(value)
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in draws.items()}


@dataclass
class GroupData:
    """One exhibition as the service sees it: unit image vectors, the topic's unit embedding
    (Topic Matching space) and ranking query, with the labels only evaluation knows."""

    exhibition_id: str
    vectors: np.ndarray  # (n, d) float32, unit rows
    topic_emb: np.ndarray  # (d,) unit
    query: np.ndarray  # (d,) unit ranking query
    labels: np.ndarray
    on_topic: np.ndarray
    images: list[str]
    product_ids: list[str]
    topic: dict | None = None
    families: list[str | None] | None = None  # attrs.family per product


@dataclass
class LoadedGroups:
    model: object
    meta: dict
    criterion: str
    groups: list[GroupData]
    dropped: dict[str, str]


@torch.inference_mode()
def load_groups(
    run_dir: str | Path,
    data_dir: str | Path,
    split: str = "test",
    k: int = 50,
    seed: int = 0,
    cache_dir: str | None = None,
    device: str | None = None,
    criterion: str | None = None,
    groups: frozenset[str] | None = None,
) -> LoadedGroups:
    """The split's exhibitions (only those of `groups`, when given) encoded by the run's model
    (cached backbone features), groups larger than k sampled down with a fixed seed so every
    model sees the same images."""
    run_dir = Path(run_dir)
    device = clik.encoders.pick_device(device)
    model, tokenizer, meta = clik.load_checkpoint(checkpoint_dir(run_dir), device=device)
    dataset = load_dataset(data_dir)
    criterion = criterion or meta.get("criterion") or dataset.default_criterion
    # Default to the cache the run trained with: the backbone features are the same.
    cache_dir = cache_dir or meta.get("train", {}).get("cache_dir", ".cache/features")
    prepared_split = prepare_split(dataset, split, tokenizer, criterion)
    if groups is not None:
        prepared_split = without_groups(prepared_split, frozenset(g.group for g in prepared_split.groups) - groups)
    found = split_features(model, tokenizer, prepared_split, cache_dir, device=device)
    prepared = found.split
    topic_emb = model.topic.text.project(torch.as_tensor(found.topics, device=device))
    queries = model.ranking_query(topic_emb).float().cpu().numpy()
    topics = F.normalize(topic_emb.float(), dim=-1).cpu().numpy()

    family_of = {p.id: p.attrs.get("family") for ex in dataset.exhibitions for p in ex.products}
    rng = np.random.default_rng(seed)
    out: list[GroupData] = []
    for group, pids in zip(prepared.groups, prepared.product_ids):
        idx = np.arange(len(group.image_rows))
        if len(idx) > k:
            idx = np.sort(rng.choice(len(idx), size=k, replace=False))
        rows = group.image_rows[idx]
        emb = model.image.project(torch.as_tensor(found.images[rows], device=device))
        out.append(
            GroupData(
                exhibition_id=group.exhibition_id,
                vectors=F.normalize(emb.float(), dim=-1).cpu().numpy(),
                topic_emb=topics[group.topic_row],
                query=queries[group.topic_row],
                labels=group.labels[idx],
                on_topic=group.on_topic[idx],
                images=[prepared.images[r] for r in rows],
                product_ids=[pids[i] for i in idx],
                topic=prepared.topics[group.topic_row],
                families=[family_of.get(pids[i]) for i in idx],
            )
        )
    return LoadedGroups(model, meta, criterion, out, dict(prepared.dropped))


def evaluate(
    run_dir: str | Path,
    data_dir: str | Path,
    split: str = "test",
    k: int = 50,
    seed: int = 0,
    bootstrap_samples: int = 1000,
    cache_dir: str | None = None,
    device: str | None = None,
    criterion: str | None = None,
    diverse_options: DiverseOptions = DiverseOptions(),
) -> dict:
    from .calibrate import read_calibration

    loaded = load_groups(run_dir, data_dir, split, k, seed, cache_dir, device, criterion)
    model = loaded.model
    calibration = read_calibration(run_dir) or DEFAULT_FIT
    results: list[GroupResult] = []
    appeal_only: list[GroupResult] = []
    top5: dict[str, list[tuple[int, float]]] = {"plain": [], "diverse": []}
    same_first: list[bool] = []
    for g in loaded.groups:
        appeal = (g.vectors @ g.query).astype(np.float64)
        scored = score_products(appeal, product_features(g.vectors, g.topic_emb), calibration)
        results.append(_result(g, scored.score, scored))
        appeal_only.append(_result(g, appeal, None))
        plain = list(np.argsort(-scored.score, kind="stable")[:5])
        diverse = select_diverse(
            scored.score, g.vectors, 5, families=g.families, flagged=scored.off_topic, options=diverse_options
        )
        for name, rows in (("plain", plain), ("diverse", diverse)):
            top5[name].append(
                diversity_figures(g.vectors[rows], [(g.families or [None] * len(g.vectors))[r] for r in rows])
            )
        same_first.append(bool(diverse and diverse[0] == plain[0]))
    if not results:
        raise ValueError(f"no evaluable exhibitions in split {split!r}")
    rand = random_baseline([r.labels for r in results])
    share = float(np.mean([r.offtopic_share for r in results]))
    random_row = {
        "MRR": rand.mrr,
        **{f"Top{kk}-Top1": v for kk, v in rand.topk_top1.items()},
        "offtopic@1": share,
        "offtopic@10": share,
    }
    return {
        "run": str(run_dir),
        "data": str(data_dir),
        "split": split,
        "k": k,
        "seed": seed,
        "criterion": loaded.criterion,
        "method": model.cfg.method,
        "query": model.cfg.query if model.cfg.method == "clik" else None,
        "groups": len(results),
        "metrics": _summaries(results),
        "diversity": {
            **{
                name: {
                    "families@5": float(np.mean([f for f, _ in v])),
                    "similarity@5": float(np.mean([m for _, m in v])),
                }
                for name, v in top5.items()
            },
            "first_pick_same": float(np.mean(same_first)),
            "with_family": float(np.mean([any(g.families or []) for g in loaded.groups])),
            "options": {
                "trade_off": diverse_options.trade_off,
                "duplicate_threshold": diverse_options.duplicate_threshold,
                "pool": diverse_options.pool,
            },
        },
        "appeal_only": _summaries(appeal_only),
        "topic_fit": calibration.to_dict(),
        "ci95": bootstrap(results, bootstrap_samples, seed) if bootstrap_samples else {},
        "random": random_row,
        "offtopic_share": share,
        "unreadable_images": len(loaded.dropped),
        "per_group": [
            {
                "exhibition_id": r.exhibition_id,
                "topic": r.topic,
                "rr": r.rr,
                "top1_true_rank": r.top1_true_rank,
                "ranking": [
                    {
                        "product_id": r.product_ids[i],
                        "image": r.images[i],
                        "score": float(r.scores[i]),
                        "appeal": float(r.appeal[i]),
                        "topic_fit": float(r.topic_fit[i]),
                        "off_topic_flag": bool(r.flagged[i]),
                        "label": float(r.labels[i]),
                        "on_topic": bool(r.on_topic[i]),
                    }
                    for i in np.argsort(-r.scores, kind="stable")
                ],
            }
            for r in results
        ],
    }


def _result(g: GroupData, scores: np.ndarray, scored: ScoredProducts | None) -> GroupResult:
    order = np.argsort(-scores, kind="stable")
    return GroupResult(
        exhibition_id=g.exhibition_id,
        rr=reciprocal_rank(scores, g.labels),
        top1_true_rank=top1_true_rank(scores, g.labels),
        offtopic_at1=float(not g.on_topic[order[0]]),
        offtopic_at10=float((~g.on_topic[order[:10]]).mean()),
        offtopic_share=float((~g.on_topic).mean()),
        labels=g.labels,
        on_topic=g.on_topic,
        scores=scores,
        images=g.images,
        product_ids=g.product_ids,
        appeal=None if scored is None else scored.appeal,
        topic_fit=None if scored is None else scored.topic_fit,
        flagged=None if scored is None else scored.off_topic,
        topic=g.topic,
    )


def write_json(result: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
