"""Diverse top-k: greedy maximal marginal relevance over unit image vectors.

A collage of the top 3-6 images should not be five colourways of one garment. The selection
is greedy MMR (Carbonell & Goldstein, 1998): each next pick maximises

    trade_off * relevance - (1 - trade_off) * max cosine with the images already picked

with two hard rules on top: at most one product per family (H&M's product_code: the colour
variants of one article), and no two images whose cosine exceeds `duplicate_threshold`
(near-identical packshots). Relevance is the service's score rescaled to [0, 1] over the
candidate pool, so the trade-off means the same whatever the scale of the scores; flagged
(off-topic) products come after every fitting one, as in the plain ranking. The first pick is
always the best-scored candidate (nothing is picked yet, so nothing is redundant).

Only the best `pool` candidates by score are considered (a 10,000-product exhibition costs
k * pool * dim multiply-adds, not n^2); when the rules leave too few of them, the whole
exhibition is searched before giving up (then fewer than k come back).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_TRADE_OFF = 0.7  # relevance weight: 1.0 = plain ranking plus the two hard rules
DEFAULT_DUPLICATE_THRESHOLD = 0.95  # cosine above which two images count as the same picture
DEFAULT_POOL = 200


@dataclass(frozen=True)
class DiverseOptions:
    trade_off: float = DEFAULT_TRADE_OFF
    duplicate_threshold: float = DEFAULT_DUPLICATE_THRESHOLD
    pool: int = DEFAULT_POOL


def select_diverse(scores: np.ndarray, vectors: np.ndarray, k: int, *,
                   families: Sequence[str | None] | None = None,
                   flagged: np.ndarray | None = None,
                   eligible: np.ndarray | None = None,
                   fixed: dict[int, int] | None = None,
                   options: DiverseOptions = DiverseOptions()) -> list[int]:
    """Row indices of the diverse top k, best first.

    scores: (n,) the service's score per row; vectors: (n, d) unit rows; families: a key per
    row (None: no family); flagged: rows ranked after every unflagged one; eligible: rows that
    may be picked (blocked and unavailable ones are not); fixed: {position (0-based): row}
    placed there whatever their score (pins); they count as picked for the two rules.
    """
    n = len(scores)
    fixed = dict(fixed or {})
    k = min(k, n)
    ok = np.ones(n, dtype=bool) if eligible is None else eligible.copy()
    for row in fixed.values():
        ok[row] = False
    flagged = np.zeros(n, dtype=bool) if flagged is None else flagged
    candidates = np.flatnonzero(ok)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    picked = _select(order[: options.pool], scores, vectors, k, families, flagged, fixed, options)
    if len(picked) < k and len(order) > options.pool:  # the rules emptied the pool
        picked = _select(order, scores, vectors, k, families, flagged, fixed, options)
    return picked


def _select(pool: np.ndarray, scores: np.ndarray, vectors: np.ndarray, k: int,
            families: Sequence[str | None] | None, flagged: np.ndarray, fixed: dict[int, int],
            options: DiverseOptions) -> list[int]:
    s = scores[pool].astype(np.float64)
    fit = ~flagged[pool]
    ref = s[fit] if fit.any() else s
    lo, hi = (float(ref.min()), float(ref.max())) if len(ref) else (0.0, 0.0)
    relevance = (s - lo) / (hi - lo) if hi > lo else np.ones_like(s)
    # flagged ones sit below every fitting one: value is in [-1, 1] before this
    value = options.trade_off * relevance - 4.0 * (~fit)
    redundancy = np.full(len(pool), -np.inf)  # max cosine with the picked images
    alive = np.ones(len(pool), dtype=bool)
    pool_vectors = vectors[pool]
    pool_families = None if families is None else np.array([families[i] or "" for i in pool], dtype=object)
    out: list[int] = []
    taken_families: set[str] = set()

    def take(row: int) -> None:
        sims = pool_vectors @ vectors[row]
        np.maximum(redundancy, sims, out=redundancy)
        alive[sims > options.duplicate_threshold] = False
        fam = None if families is None else families[row]
        if fam:
            taken_families.add(fam)
            alive[pool_families == fam] = False

    for row in fixed.values():
        take(row)
    for position in range(k):
        if position in fixed:
            out.append(fixed[position])
            continue
        if not alive.any():
            continue
        redundant = np.where(np.isfinite(redundancy), redundancy, 0.0)
        mmr = value - (1.0 - options.trade_off) * redundant
        mmr[~alive] = -np.inf
        j = int(np.argmax(mmr))
        out.append(int(pool[j]))
        alive[j] = False
        take(int(pool[j]))
    return out


def diversity_figures(vectors: np.ndarray, families: Sequence[str | None]) -> tuple[int, float]:
    """(distinct families, mean pairwise cosine) of a selection; a product without a family
    counts as its own."""
    distinct = len({f if f else f"#{i}" for i, f in enumerate(families)})
    m = len(vectors)
    if m < 2:
        return distinct, 0.0
    sims = vectors @ vectors.T
    return distinct, float(sims[np.triu_indices(m, 1)].mean())
