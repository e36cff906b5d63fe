"""Offline evaluation with the paper's protocol (4.3): N = 1 group at a time, K = 50 images.

Groups larger than K are sampled down with a fixed seed, so every model sees the same images.
Scores are computed the way the service computes them: the eval-transform image features
through the image projection, the topic through the text side's ranking query, cosine.
Besides MRR and TopK-Top1 (with bootstrap confidence intervals over groups) it reports two
topic-fit figures the paper shows only as pictures: off-topic@1 and off-topic@10, the share of
off-topic products among the top 1 and top 10.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import clik
from clik.metrics import TOPK, random_baseline, reciprocal_rank, top1_true_rank

from .data.format import load_dataset
from .prepare import prepare_split, split_features


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


def _summaries(results: list[GroupResult], ks=TOPK) -> dict[str, float]:
    rr = np.array([r.rr for r in results])
    first = np.array([r.top1_true_rank for r in results])
    out = {"MRR": float(rr.mean())}
    for k in ks:
        out[f"Top{k}-Top1"] = float((first <= k).mean())
    out["offtopic@1"] = float(np.mean([r.offtopic_at1 for r in results]))
    out["offtopic@10"] = float(np.mean([r.offtopic_at10 for r in results]))
    return out


def bootstrap(results: list[GroupResult], samples: int, seed: int) -> dict[str, list[float]]:
    """95% percentile intervals, resampling groups with replacement."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(samples):
        pick = rng.integers(0, len(results), len(results))
        for key, value in _summaries([results[i] for i in pick]).items():
            draws.setdefault(key, []).append(value)
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in draws.items()}


@torch.inference_mode()
def evaluate(run_dir: str | Path, data_dir: str | Path, split: str = "test", k: int = 50, seed: int = 0,
             bootstrap_samples: int = 1000, cache_dir: str | None = None, device: str | None = None,
             criterion: str | None = None) -> dict:
    run_dir = Path(run_dir)
    device = clik.runtime.pick_device(device)
    ckpt = run_dir / "checkpoint" if (run_dir / "checkpoint").is_dir() else run_dir
    model, tokenizer, meta = clik.load_checkpoint(ckpt, device=device)
    dataset = load_dataset(data_dir)
    criterion = criterion or meta.get("criterion") or dataset.default_criterion
    # Default to the cache the run trained with: the backbone features are the same.
    cache_dir = cache_dir or meta.get("train", {}).get("cache_dir", ".cache/features")
    found = split_features(model, tokenizer, prepare_split(dataset, split, tokenizer, criterion), cache_dir, device=device)
    prepared = found.split
    topic_emb = model.topic.text.proj(torch.as_tensor(found.topics, device=device))
    queries = model.ranking_query(topic_emb).float().cpu().numpy()

    rng = np.random.default_rng(seed)
    results: list[GroupResult] = []
    for group, pids in zip(prepared.groups, prepared.product_ids):
        idx = np.arange(len(group.image_rows))
        if len(idx) > k:
            idx = np.sort(rng.choice(len(idx), size=k, replace=False))
        rows = group.image_rows[idx]
        sources = [prepared.images[r] for r in rows]
        emb = model.image.proj(torch.as_tensor(found.images[rows], device=device))
        scores = (F.normalize(emb.float(), dim=-1).cpu().numpy() @ queries[group.topic_row]).astype(np.float64)
        labels, on_topic = group.labels[idx], group.on_topic[idx]
        order = np.argsort(-scores, kind="stable")
        results.append(GroupResult(
            exhibition_id=group.exhibition_id,
            rr=reciprocal_rank(scores, labels),
            top1_true_rank=top1_true_rank(scores, labels),
            offtopic_at1=float(not on_topic[order[0]]),
            offtopic_at10=float((~on_topic[order[:10]]).mean()),
            offtopic_share=float((~on_topic).mean()),
            labels=labels, on_topic=on_topic, scores=scores, images=sources,
            product_ids=[pids[i] for i in idx],
        ))
    if not results:
        raise ValueError(f"no evaluable exhibitions in split {split!r}")
    rand = random_baseline([r.labels for r in results])
    share = float(np.mean([r.offtopic_share for r in results]))
    random_row = {"MRR": rand.mrr, **{f"Top{kk}-Top1": v for kk, v in rand.topk_top1.items()},
                  "offtopic@1": share, "offtopic@10": share}
    return {
        "run": str(run_dir),
        "data": str(data_dir),
        "split": split,
        "k": k,
        "seed": seed,
        "criterion": criterion,
        "method": model.cfg.method,
        "query": model.cfg.query if model.cfg.method == "clik" else None,
        "groups": len(results),
        "metrics": _summaries(results),
        "ci95": bootstrap(results, bootstrap_samples, seed) if bootstrap_samples else {},
        "random": random_row,
        "offtopic_share": share,
        "unreadable_images": len(prepared.dropped),
        "per_group": [
            {"exhibition_id": r.exhibition_id, "rr": r.rr, "top1_true_rank": r.top1_true_rank,
             "ranking": [{"product_id": r.product_ids[i], "image": r.images[i], "score": float(r.scores[i]),
                          "label": float(r.labels[i]), "on_topic": bool(r.on_topic[i])}
                         for i in np.argsort(-r.scores, kind="stable")]}
            for r in results
        ],
    }


def write_json(result: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
