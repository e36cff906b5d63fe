"""Topic-fit calibration of a trained run (clik.topic_fit.TopicFit), written beside the
checkpoint (RUN/checkpoint/topic_fit.json) so that `clik export` puts it in the bundle.

Two things are fitted: the logistic model of P(on-topic) over the product features, and the
weight of the context term in the ranking score. Both need exhibitions the model did not train
on: on its own train exhibitions the appeal is far better than on new topics (H&M: MRR 0.85
against 0.19), so a weight chosen there would be near 0. So, with locked towers (cheap), the
train topic groups are cut into `calibration_folds` folds and one extra model is trained per fold
without it (cross-fitting): every train exhibition is then scored once by a model that never saw
its topic, and both are fitted on all of them pooled; the run's own model (trained on every
group) gets that calibration. The context weight and the flag threshold maximise
MRR - off-topic@1 over a grid (an off-topic hero image costs what the right one gains; a
threshold that flags attractive on-topic outliers, which can never be first, costs MRR). One held-out fold alone (36 H&M
exhibitions) picked weights from 1 to 4 across split seeds: too few to choose from.
In full mode, or under torchrun, the logistic model is fitted on the train exhibitions and the
context weight keeps its default.

Data without off-topic labels (CTR labels from logged events: every product counts as on-topic)
can fit no calibration. A run warm-started from a model (`init_from`) then keeps that model's
calibration, fitted where labels existed, instead of falling back to the prior: measured in the
closed loop, the prior in its place cost more held-out MRR than the fine-tuning gained
(docs/experiments.md). The fold models are not trained then.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from clik.checkpoint import checkpoint_dir
from clik.metrics import reciprocal_rank
from clik.topic_fit import DEFAULT_FIT, TopicFit, fit, product_features, score_products

from .config import TrainConfig
from .data.format import load_dataset
from .evaluate import GroupData, load_groups

CALIBRATION_FILE = "topic_fit.json"
CONTEXT_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
THRESHOLDS = (0.5, 0.3, 0.2, 0.1, 0.05)
MIN_HOLDOUT_GROUPS = 3


def group_folds(data_dir: str | Path, folds: int, seed: int) -> list[frozenset[str]]:
    """The train split's topic groups in `folds` deterministic folds ([] when there are fewer
    than MIN_HOLDOUT_GROUPS groups per fold)."""
    groups = sorted({e.group for e in load_dataset(data_dir).split("train")})
    if folds < 2 or len(groups) < folds * MIN_HOLDOUT_GROUPS:
        return []
    order = np.random.default_rng(seed).permutation(len(groups))
    return [frozenset(groups[i] for i in order[f::folds]) for f in range(folds)]


def fit_calibration(
    groups: list[GroupData], weights=CONTEXT_WEIGHTS, thresholds=THRESHOLDS, tune_ranking: bool = True
) -> TopicFit:
    """Logistic model on the groups' labelled products, then (tune_ranking) the context weight
    and the flag threshold with the best MRR - off-topic@1 on the same groups (a flagged product
    is never first, so a threshold that flags attractive on-topic outliers costs MRR)."""
    groups = [g for g in groups if len(g.on_topic) >= 2]
    features = [product_features(g.vectors, g.topic_emb) for g in groups]
    try:
        calibration = fit(features, [g.on_topic for g in groups])
    except ValueError:  # no off-topic product to learn from
        return DEFAULT_FIT
    if not tune_ranking:
        return calibration
    best, best_value, table = (calibration.context_weight, calibration.threshold), -np.inf, {}
    for threshold in thresholds:
        for w in weights:
            candidate = replace(calibration, context_weight=w, threshold=threshold)
            rr, off1 = [], []
            for g, f in zip(groups, features):
                score = score_products(g.vectors @ g.query, f, candidate).score
                rr.append(reciprocal_rank(score, g.labels))
                off1.append(float(not g.on_topic[int(np.argmax(score))]))
            value = float(np.mean(rr) - np.mean(off1))
            table[f"{w}@{threshold}"] = round(value, 4)
            if value > best_value + 1e-9:
                best, best_value = (w, threshold), value
    return replace(
        calibration, context_weight=best[0], threshold=best[1], fitted_on={**calibration.fitted_on, "objective": table}
    )


def fold_config(cfg: TrainConfig) -> TrainConfig:
    """How the fold models train. Partial mode: as its locked phase only. The fold models exist
    to score train exhibitions with topics they never saw; unlocking their tops too would cost
    each fold what the run's own partial phase costs (on a 2-core CPU, 4x the run). An
    approximation: the calibration is then fitted on the locked model's scores and applied to the
    partial model's; its features are robust z-scores within each exhibition, so their scale does
    not carry over, only how well they separate (docs/training.md)."""
    return replace(cfg, mode="locked") if cfg.mode == "partial" else cfg


def calibrate_run(run_dir: str | Path, data_dir: str | Path, cfg: TrainConfig, distributed: bool = False) -> TopicFit:
    """Fit and write the run's calibration (see the module docstring)."""
    from .trainer import train

    run_dir = Path(run_dir)
    if not _has_off_topic_labels(data_dir):
        inherited = source_calibration(cfg.init_from) if cfg.init_from else None
        calibration = (
            DEFAULT_FIT
            if inherited is None
            else replace(inherited, fitted_on={**inherited.fitted_on, "inherited_from": str(cfg.init_from)})
        )
        (checkpoint_dir(run_dir) / CALIBRATION_FILE).write_text(json.dumps(calibration.to_dict(), indent=1) + "\n")
        return calibration
    folds = (
        group_folds(data_dir, cfg.calibration_folds, cfg.seed)
        if cfg.mode in ("locked", "partial") and not distributed
        else []
    )
    if folds:
        held_out: list[GroupData] = []
        for n, fold in enumerate(folds):
            aux = run_dir / f"calibration-fold{n}"
            train(data_dir, fold_config(cfg), aux, progress=False, exclude_groups=fold, calibrate=False)
            held_out += load_groups(aux, data_dir, split="train", groups=fold, cache_dir=cfg.cache_dir).groups
            shutil.rmtree(aux, ignore_errors=True)
        calibration = fit_calibration(held_out)
        calibration = replace(calibration, fitted_on={**calibration.fitted_on, "folds": len(folds)})
    else:
        loaded = load_groups(run_dir, data_dir, split="train", cache_dir=cfg.cache_dir)
        calibration = fit_calibration(loaded.groups, tune_ranking=False)
        calibration = replace(calibration, fitted_on={**calibration.fitted_on, "split": "train"})
    (checkpoint_dir(run_dir) / CALIBRATION_FILE).write_text(json.dumps(calibration.to_dict(), indent=1) + "\n")
    return calibration


def _has_off_topic_labels(data_dir: str | Path) -> bool:
    return any(not p.on_topic for ex in load_dataset(data_dir).split("train") for p in ex.products)


def source_calibration(path: str | Path) -> TopicFit | None:
    """The calibration of a run, checkpoint or exported bundle (its text side), if it has one."""
    path = Path(path)
    for candidate in (checkpoint_dir(path) / CALIBRATION_FILE, path / "text" / CALIBRATION_FILE):
        if candidate.exists():
            return TopicFit.from_dict(json.loads(candidate.read_text()))
    return None


def read_calibration(run_dir: str | Path) -> TopicFit | None:
    path = checkpoint_dir(run_dir) / CALIBRATION_FILE
    return TopicFit.from_dict(json.loads(path.read_text())) if path.exists() else None
