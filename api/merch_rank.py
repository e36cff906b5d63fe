"""Business rules applied to a scored block: availability and blocks (excluded before anything
is picked), boosts (added to the score), pins (fixed positions) and the diverse selection.

The block holds only vectors; the facets of its rows (family, availability, numeric attrs) are
looked up once per decoded block (the products' attrs, one store read) and kept beside it
(api.per_block_cache), so a
warm request only does O(n) array work (one masked copy of the scores) and its page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from api.merch import Facet, Overrides
from clik.diverse import DiverseOptions, family_codes, select_diverse
from indexer.packed_block import ScoringBlock
from indexer.ranking import ranked_slice


@dataclass(frozen=True)
class Aligned:
    """Facets aligned with a block's rows."""

    unavailable: np.ndarray  # bool (n,)
    families: np.ndarray | None  # family codes (clik.diverse.family_codes); None: no product has one
    numeric: dict[str, np.ndarray]  # attr -> (n,) values, 0 where a product has none
    row_of: dict[str, int]  # product id -> row

    @property
    def nbytes(self) -> int:
        """About what it holds (the per-block cache is bounded by this)."""
        return (
            self.unavailable.nbytes
            + (0 if self.families is None else self.families.nbytes)
            + sum(a.nbytes for a in self.numeric.values())
            + 64 * len(self.row_of)
        )

    @property
    def any_facet(self) -> bool:
        """Some product is unavailable, has a family or a number a boost could use."""
        return bool(self.unavailable.any() or self.families is not None or self.numeric)


def align(block: ScoringBlock, facets: Mapping[str, Facet]) -> Aligned:
    ids = [str(p) for p in block.product_ids]
    n = len(ids)
    unavailable = np.zeros(n, dtype=bool)
    families: list[str | None] = [None] * n
    numeric: dict[str, np.ndarray] = {}
    for i, pid in enumerate(ids):
        f = facets.get(pid)
        if f is None:
            continue
        unavailable[i] = f.unavailable
        families[i] = f.family
        for name, value in f.numeric.items():
            numeric.setdefault(name, np.zeros(n, dtype=np.float32))[i] = value
    return Aligned(
        unavailable, family_codes(families) if any(families) else None, numeric, {pid: i for i, pid in enumerate(ids)}
    )


@dataclass(frozen=True)
class Rules:
    """What applies to one exhibition's request."""

    overrides: Overrides
    boosts: Mapping[str, float]  # attr -> weight in force (the exhibition's, else the global ones)
    diverse: DiverseOptions | None = None  # None: the plain ranking


@dataclass
class Arranged:
    rows: list[int]  # the page, in order
    scores: dict[int, float]  # row -> final score (boosts included)
    boosts: dict[int, dict[str, float]]  # row -> {attr: weight * value} (non-zero only)
    pinned: set[int]
    excluded: np.ndarray  # bool (n,): blocked or unavailable
    blocked: list[str] = field(default_factory=list)  # listed products the overrides block
    unavailable: list[str] = field(default_factory=list)  # sold out or hidden


def arrange(
    block: ScoringBlock, score: np.ndarray, flagged: np.ndarray, aligned: Aligned, rules: Rules, offset: int, limit: int
) -> Arranged:
    n = len(score)
    ov = rules.overrides
    blocked_mask = np.zeros(n, dtype=bool)
    blocked_rows = [aligned.row_of[p] for p in ov.blocked if p in aligned.row_of]
    blocked_mask[blocked_rows] = True
    excluded = blocked_mask | aligned.unavailable
    weights = {a: w for a, w in rules.boosts.items() if w and a in aligned.numeric}
    final = score
    if weights:
        final = score + sum(w * aligned.numeric[a] for a, w in weights.items())
    # pins: positions are 1-based in the API; a pinned product that is unavailable (or has no
    # vector yet) is skipped, the sold-out rule wins over a pin
    pins = {
        pos - 1: aligned.row_of[p]
        for p, pos in ov.pinned.items()
        if p in aligned.row_of and not excluded[aligned.row_of[p]]
    }
    end = offset + limit
    if rules.diverse is not None:
        fixed = {pos: row for pos, row in pins.items() if pos < end}
        rows = select_diverse(
            final,
            block.matrix,
            end,
            families=aligned.families,
            flagged=flagged,
            eligible=~excluded,
            fixed=fixed,
            options=rules.diverse,
        )
    else:
        rows = _with_pins(final, excluded, pins, end)
    rows = rows[offset:end]
    boosts = {
        r: {a: float(w * aligned.numeric[a][r]) for a, w in weights.items() if aligned.numeric[a][r]} for r in rows
    }
    ids = block.product_ids
    return Arranged(
        rows,
        {r: float(final[r]) for r in rows},
        boosts,
        set(pins.values()) & set(rows),
        excluded,
        sorted(str(ids[r]) for r in blocked_rows),
        [str(ids[r]) for r in np.flatnonzero(aligned.unavailable)],
    )


def _with_pins(final: np.ndarray, excluded: np.ndarray, pins: dict[int, int], end: int) -> list[int]:
    """The first `end` rows: pins at their positions, the rest by score (excluded rows never)."""
    masked = final
    if excluded.any() or pins:
        masked = np.where(excluded, -np.inf, final)
        masked[list(pins.values())] = -np.inf
    eligible = int(len(final) - np.count_nonzero(np.isneginf(masked)))
    rest = [int(i) for i in ranked_slice(masked, 0, min(end, eligible))]
    out: list[int] = []
    later = sorted(pins.items())
    it = iter(rest)
    position = 0
    while len(out) < end:
        if later and later[0][0] == position:
            out.append(later.pop(0)[1])
        else:
            row = next(it, None)
            if row is None:  # fewer products than the pins' positions: pins close up
                out.extend(r for _, r in later)
                break
            out.append(row)
        position += 1
    return out[:end]
