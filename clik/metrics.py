"""Ranking metrics exactly as the paper defines them (4.3.1), with ties made explicit.

For one group with predicted scores s and criterion values y (higher is better for both):

- **MRR** averages 1 / Rank(x*, f(G)), the predicted rank of the true best image x*.
- **TopK-Top1** is the share of groups whose predicted-best image has a true rank <= K
  (the paper's random baselines, 1/50, 3/50, 5/50 at group size 50, fix "<= K").

Ties, which the paper does not discuss, are resolved so that no model gains from them:
- *Ties in the criterion* (several images share the best value): each of them is a correct
  pick. The true rank of an image is 1 + the number of images with a strictly greater criterion
  (competition ranking), and for MRR x* is the tied-best image the model ranks highest.
- *Ties in the predicted scores* are broken against the model: an image's predicted rank is
  1 + the number of *other* images scoring at least as high, and when several images share the
  top score, the predicted best is the one with the worst true rank. A model that scores every
  image the same therefore gets the worst value, not the best.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Iterable, Sequence

import numpy as np

TOPK = (1, 3, 5)


def true_ranks(criterion: np.ndarray) -> np.ndarray:
    """Competition ranks (1 = best) of the criterion: ties share the better rank."""
    criterion = np.asarray(criterion, dtype=np.float64)
    return 1 + (criterion[None, :] > criterion[:, None]).sum(axis=1)


def predicted_ranks(scores: np.ndarray) -> np.ndarray:
    """Pessimistic predicted ranks: 1 + number of other images scoring >= this one."""
    scores = np.asarray(scores, dtype=np.float64)
    return (scores[None, :] >= scores[:, None]).sum(axis=1)


def reciprocal_rank(scores: Sequence[float], criterion: Sequence[float]) -> float:
    scores, criterion = _check(scores, criterion)
    best = true_ranks(criterion) == 1
    return 1.0 / predicted_ranks(scores)[best].min()


def top1_true_rank(scores: Sequence[float], criterion: Sequence[float]) -> int:
    """True rank of the image the model puts first (ties at the top resolved pessimistically)."""
    scores, criterion = _check(scores, criterion)
    top = scores == scores.max()
    return int(true_ranks(criterion)[top].max())


@dataclass(frozen=True)
class GroupMetrics:
    mrr: float
    topk_top1: dict[int, float]
    groups: int

    def as_dict(self) -> dict[str, float]:
        out = {"MRR": self.mrr, **{f"Top{k}-Top1": v for k, v in self.topk_top1.items()}, "groups": self.groups}
        return out


def evaluate_groups(
    groups: Iterable[tuple[Sequence[float], Sequence[float]]], ks: Sequence[int] = TOPK
) -> GroupMetrics:
    """MRR and TopK-Top1 over (scores, criterion) pairs, one pair per group."""
    rr, first = [], []
    for scores, criterion in groups:
        rr.append(reciprocal_rank(scores, criterion))
        first.append(top1_true_rank(scores, criterion))
    if not rr:
        raise ValueError("no groups to evaluate")
    first_arr = np.asarray(first)
    return GroupMetrics(float(np.mean(rr)), {k: float(np.mean(first_arr <= k)) for k in ks}, len(rr))


def random_baseline(criteria: Iterable[Sequence[float]], ks: Sequence[int] = TOPK) -> GroupMetrics:
    """The exact expected metrics of a uniformly random ranking, per group, averaged.

    MRR: with n images of which m tie for best, the best-placed of the m has rank r with
    probability C(n - r, m - 1) / C(n, m). TopK-Top1: the random first pick is any image with
    equal chance, so it is the share of images whose true rank is <= K. With n = 50 and no ties
    this gives the paper's 0.0899 / 0.02 / 0.06 / 0.1.
    """
    rr, hits = [], {k: [] for k in ks}
    for criterion in criteria:
        ranks = true_ranks(np.asarray(criterion))
        n, m = len(ranks), int((ranks == 1).sum())
        rr.append(sum(comb(n - r, m - 1) / r for r in range(1, n - m + 2)) / comb(n, m))
        for k in ks:
            hits[k].append(float(np.mean(ranks <= k)))
    if not rr:
        raise ValueError("no groups to evaluate")
    return GroupMetrics(float(np.mean(rr)), {k: float(np.mean(v)) for k, v in hits.items()}, len(rr))


def _check(scores, criterion) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    criterion = np.asarray(criterion, dtype=np.float64)
    if scores.shape != criterion.shape or scores.ndim != 1 or len(scores) < 2:
        raise ValueError("scores and criterion must be 1-d, equally long, with at least 2 images")
    if not (np.isfinite(scores).all() and np.isfinite(criterion).all()):
        raise ValueError("scores and criterion must be finite")
    return scores, criterion
