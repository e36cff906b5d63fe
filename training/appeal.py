"""Fit the appeal prior (clik/appeal.py) of a locked-mode CLIK run, in closed form.

Over the train split's cached backbone features: ridge regression of "is this product its
exhibition's best seller" (ties all count) on the standardised features, both centred within
each exhibition (only the order inside an exhibition matters), on-topic products only. The
penalty is large (`appeal_penalty` per train image), so the direction stays near the features'
covariance with being the best seller: what carries over to topics never trained on. On the
H&M dev splits a penalty of 10 per image ranked new topics worse than 100 (MRR 0.232 against
0.244); 1000 was level (0.241) (docs/training.md).

The prior is scaled so that three standard deviations over the train images reach the clip of
clik.appeal.AppealCoordinate, and the ranking query gets the share that makes it worth
`appeal_weight` times the cosine.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

import clik
from clik.appeal import query_share

from .sampling import PreparedGroup

CLIP_AT_SD = 3.0  # standard deviations of the prior (train images) at the coordinate's clip


def fit_appeal_prior(features: np.ndarray, groups: Sequence[PreparedGroup], penalty: float) -> tuple[np.ndarray, float]:
    """(weight, bias) of a = f . weight + bias over raw features f; zeros when nothing to fit."""
    features = np.asarray(features, dtype=np.float64)
    width = features.shape[1]
    rows = np.unique(np.concatenate([g.image_rows for g in groups])) if groups else np.zeros(0, int)
    if len(rows) < 2:
        return np.zeros(width), 0.0
    mean = features[rows].mean(0)
    scale = features[rows].std(0) + 1e-6
    xs, ys = [], []
    for group in groups:
        on = np.asarray(group.on_topic, dtype=bool)
        if on.sum() < 2:
            continue
        labels = np.asarray(group.labels, dtype=np.float64)[on]
        best = (labels == labels.max()).astype(np.float64)
        if best.all():  # every product ties: nothing to learn from this exhibition
            continue
        x = (features[group.image_rows[on]] - mean) / scale
        xs.append(x - x.mean(0))
        ys.append(best - best.mean())
    if not xs:
        return np.zeros(width), 0.0
    x, y = np.concatenate(xs), np.concatenate(ys)
    direction = np.linalg.solve(x.T @ x + penalty * len(x) * np.eye(width), x.T @ y)
    prior = ((features[rows] - mean) / scale) @ direction
    spread = float(prior.std())
    if spread < 1e-12:
        return np.zeros(width), 0.0
    weight = direction / scale / (CLIP_AT_SD * spread)
    return weight, float(-mean @ weight)


def install_appeal_prior(model: clik.ClikModel, weight: np.ndarray, bias: float, appeal_weight: float) -> None:
    """Put a fitted prior into the model: the image coordinate and the query's share of it."""
    if model.image.appeal is None:
        raise ValueError("this model has no appeal coordinate (model config appeal_prior is off)")
    model.image.appeal.set(torch.as_tensor(weight, dtype=torch.float32), bias)
    model.topic.appeal_share.fill_(query_share(appeal_weight))
