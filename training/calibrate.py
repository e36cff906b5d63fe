"""Topic-fit calibration of a trained run (clik.topic_fit.TopicFit), written beside the
checkpoint (RUN/checkpoint/topic_fit.json) so that `clik export` puts it in the bundle.

Two things are fitted: the logistic model of P(on-topic) over the product features, and the
weight of the context term in the ranking score. Both need exhibitions the model did not train
on: on its own train exhibitions the appeal is far better than on new topics (H&M: MRR 0.85
against 0.19), so a weight chosen there would be near 0. So, with locked towers (cheap), a
second model is trained with a share of the train topic groups held out
(`calibration_holdout`), and both are fitted on those held-out exhibitions; the run's own model
(trained on every group) then gets that calibration. The context weight maximises
MRR - off-topic@1 over a grid (an off-topic hero image costs what the right one gains).
In full mode, or under torchrun, the logistic model is fitted on the train exhibitions and the
context weight keeps its default.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from clik.metrics import reciprocal_rank
from clik.topic_fit import DEFAULT_FIT, TopicFit, fit, product_features, score_products

from .config import TrainConfig
from .data.format import load_dataset
from .evaluate import GroupData, load_groups

CALIBRATION_FILE = "topic_fit.json"
CONTEXT_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
MIN_HOLDOUT_GROUPS = 3


def checkpoint_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir / "checkpoint" if (run_dir / "checkpoint").is_dir() else run_dir


def holdout_groups(data_dir: str | Path, share: float, seed: int) -> frozenset[str]:
    """A deterministic share of the train split's topic groups (at least MIN_HOLDOUT_GROUPS,
    none when fewer than twice that many exist)."""
    groups = sorted({e.group for e in load_dataset(data_dir).split("train")})
    n = int(round(share * len(groups)))
    if share <= 0 or len(groups) < 2 * MIN_HOLDOUT_GROUPS:
        return frozenset()
    n = max(n, MIN_HOLDOUT_GROUPS)
    picked = np.random.default_rng(seed).permutation(len(groups))[:n]
    return frozenset(groups[i] for i in picked)


def fit_calibration(groups: list[GroupData], weights=CONTEXT_WEIGHTS, tune_context: bool = True) -> TopicFit:
    """Logistic model on the groups' labelled products, then (tune_context) the context weight
    with the best MRR - off-topic@1 on the same groups."""
    groups = [g for g in groups if len(g.on_topic) >= 2]
    features = [product_features(g.vectors, g.topic_emb) for g in groups]
    try:
        calibration = fit(features, [g.on_topic for g in groups])
    except ValueError:  # no off-topic product to learn from
        return DEFAULT_FIT
    if not tune_context:
        return calibration
    best, best_value, table = calibration.context_weight, -np.inf, {}
    for w in weights:
        candidate = replace(calibration, context_weight=w)
        rr, off1 = [], []
        for g, f in zip(groups, features):
            score = score_products(g.vectors @ g.query, f, candidate).score
            rr.append(reciprocal_rank(score, g.labels))
            off1.append(float(not g.on_topic[int(np.argmax(score))]))
        value = float(np.mean(rr) - np.mean(off1))
        table[str(w)] = round(value, 4)
        if value > best_value + 1e-9:
            best, best_value = w, value
    return replace(calibration, context_weight=best,
                   fitted_on={**calibration.fitted_on, "context_weight_objective": table})


def calibrate_run(run_dir: str | Path, data_dir: str | Path, cfg: TrainConfig,
                  distributed: bool = False) -> TopicFit:
    """Fit and write the run's calibration (see the module docstring)."""
    from .trainer import train

    run_dir = Path(run_dir)
    holdout = frozenset()
    if cfg.mode == "locked" and not distributed:
        holdout = holdout_groups(data_dir, cfg.calibration_holdout, cfg.seed)
    if holdout:
        aux = run_dir / "calibration-run"
        train(data_dir, cfg, aux, progress=False, exclude_groups=holdout, calibrate=False)
        loaded = load_groups(aux, data_dir, split="train", groups=holdout, cache_dir=cfg.cache_dir)
        calibration = fit_calibration(loaded.groups)
        calibration = replace(calibration, fitted_on={**calibration.fitted_on, "holdout_groups": len(holdout)})
        shutil.rmtree(aux, ignore_errors=True)
    else:
        loaded = load_groups(run_dir, data_dir, split="train", cache_dir=cfg.cache_dir)
        calibration = fit_calibration(loaded.groups, tune_context=False)
        calibration = replace(calibration, fitted_on={**calibration.fitted_on, "split": "train"})
    (checkpoint_dir(run_dir) / CALIBRATION_FILE).write_text(json.dumps(calibration.to_dict(), indent=1) + "\n")
    return calibration


def read_calibration(run_dir: str | Path) -> TopicFit | None:
    path = checkpoint_dir(run_dir) / CALIBRATION_FILE
    return TopicFit.from_dict(json.loads(path.read_text())) if path.exists() else None
