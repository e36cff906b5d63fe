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


def select_diverse(
    scores: np.ndarray,
    vectors: np.ndarray,
    k: int,
    *,
    families: Sequence[str | None] | np.ndarray | None = None,
    flagged: np.ndarray | None = None,
    eligible: np.ndarray | None = None,
    fixed: dict[int, int] | None = None,
    options: DiverseOptions = DiverseOptions(),
) -> list[int]:
    """Row indices of the diverse top k, best first.

    scores: (n,) the service's score per row; vectors: (n, d) unit rows; families: a key per
    row (None: no family), or their family_codes (cheaper when reused); flagged: rows ranked after every unflagged one; eligible: rows that
    may be picked (blocked and unavailable ones are not); fixed: {position (0-based): row}
    placed there whatever their score (pins); they count as picked for the two rules.
    """
    n = len(scores)
    fixed = dict(fixed or {})
    k = min(k, n)
    if families is not None and not (isinstance(families, np.ndarray) and families.dtype.kind == "i"):
        families = family_codes(families)
    ok = np.ones(n, dtype=bool) if eligible is None else eligible.copy()
    for row in fixed.values():
        ok[row] = False
    flagged = np.zeros(n, dtype=bool) if flagged is None else flagged
    masked = np.where(ok, scores, -np.inf)
    available = int(np.count_nonzero(ok))
    # the pool by argpartition: a full sort of 10,000 scores alone costs ~0.5 ms
    pool = min(max(options.pool, 4 * k), available)
    order = _best(masked, pool)
    picked = _select(order, scores, vectors, k, families, flagged, fixed, options)
    if len(picked) < k and available > pool:  # the rules emptied the pool: search everything
        picked = _select(_best(masked, available), scores, vectors, k, families, flagged, fixed, options)
    return picked


def _best(masked: np.ndarray, m: int) -> np.ndarray:
    """Rows of the m best scores, best first (ties by row)."""
    if m <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-masked, m - 1)[:m] if m < len(masked) else np.arange(len(masked))
    part.sort()
    return part[np.argsort(-masked[part], kind="stable")]


def family_codes(families: Sequence[str | None]) -> np.ndarray:
    """Families as integer codes (-1: none), so the selection compares integers."""
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(f, len(codes)) if f else -1 for f in families], dtype=np.int64)


def _select(
    pool: np.ndarray,
    scores: np.ndarray,
    vectors: np.ndarray,
    k: int,
    families: np.ndarray | None,
    flagged: np.ndarray,
    fixed: dict[int, int],
    options: DiverseOptions,
) -> list[int]:
    s = scores[pool].astype(np.float64)
    fit = ~flagged[pool]
    ref = s[fit] if fit.any() else s
    lo, hi = (float(ref.min()), float(ref.max())) if len(ref) else (0.0, 0.0)
    relevance = (s - lo) / (hi - lo) if hi > lo else np.ones_like(s)
    # flagged ones sit below every fitting one: the value is in [-1, 1] before this
    value = options.trade_off * relevance - 4.0 * (~fit)
    penalty = 1.0 - options.trade_off
    mmr = value.copy()  # value - penalty * max cosine with the picked images (none yet: 0)
    redundancy = np.zeros(len(pool))
    pool_vectors = vectors[pool]
    pool_families = None if families is None else families[pool]
    out: list[int] = []
    first = True

    def take(row: int) -> None:
        nonlocal first
        sims = pool_vectors @ vectors[row]
        if first:  # max with nothing picked yet: the similarity itself
            redundancy[:] = sims
            first = False
        else:
            np.maximum(redundancy, sims, out=redundancy)
        np.subtract(value, penalty * redundancy, out=mmr)
        dead = sims > options.duplicate_threshold
        if pool_families is not None and families[row] >= 0:
            dead |= pool_families == families[row]
        alive[dead] = False

    alive = np.ones(len(pool), dtype=bool)
    for row in fixed.values():
        take(row)
    for position in range(k):
        if position in fixed:
            out.append(fixed[position])
            continue
        candidates = np.where(alive, mmr, -np.inf)
        j = int(np.argmax(candidates))
        if not np.isfinite(candidates[j]):
            continue  # nothing left in the pool (the caller may retry with all products)
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
