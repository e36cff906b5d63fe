"""Explained rankings: every product's appeal (CLIK's ranking score), topic fit (a calibrated
probability that it belongs to the topic) and final score (clik.topic_fit.score_products: appeal
plus how much the product looks like its exhibition, flagged products after all fitting ones).

Everything but the page depends only on the exhibition's block and the topic, so it is computed
once per decoded block and topic and kept beside the process's block cache (a new block object
after any change of products or vectors means a new computation); a warm request only picks
its page (argpartition).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clik.topic_fit import TopicFit, product_features, score_products
from api.merch_rank import Aligned, Rules, arrange
from api.per_block_cache import PerBlockCache
from indexer.packed_block import ScoringBlock
from indexer.ranking import ranked_slice
from indexer.vectors import normalised_query


@dataclass(frozen=True)
class ExplainedItem:
    product_id: str
    score: float  # what orders the ranking: appeal + context term, below every fitting product when flagged
    appeal: float  # cosine of the image vector with the group query (F1)
    topic_fit: float  # P(the product belongs to the topic) (F2)
    off_topic: bool  # topic_fit below the threshold
    rank: int
    boosts: dict[str, float] = field(default_factory=dict)  # attr -> weight * value, in score
    pinned: bool = False  # placed at this position by the exhibition's overrides


@dataclass(frozen=True)
class ExplainedRanking:
    exhibition_id: str
    model_version: str
    items: list[ExplainedItem]
    total_scored: int
    pending: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    off_topic: list[str] = field(default_factory=list)  # every scored product flagged, best appeal first
    all_off_topic: bool = False  # every product is flagged: the first one is flagged too
    threshold: float = 0.5
    blocked: list[str] = field(default_factory=list)  # scored products the overrides block
    unavailable: list[str] = field(default_factory=list)  # scored products sold out or hidden
    diverse: bool = False
    etag: str = ""  # a strong validator of this answer (api/rankings.py Rankings.page)


@dataclass(frozen=True)
class _Scored:
    """One exhibition block scored for one topic: what every later request of it reuses."""

    score: np.ndarray
    appeal: np.ndarray
    topic_fit: np.ndarray
    flagged: np.ndarray
    off_topic: list[str]  # flagged products, most appealing first

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.score, self.appeal, self.topic_fit, self.flagged)) + 64 * len(self.off_topic)


def _score(
    block: ScoringBlock, query: np.ndarray, topic_emb: np.ndarray, calibration: TopicFit, threshold: float
) -> _Scored:
    q = normalised_query(query, block.dim)
    t = normalised_query(topic_emb, block.dim)
    appeal = block.matrix @ q
    scored = score_products(appeal, product_features(block.matrix, t), calibration, threshold)
    flagged_idx = np.flatnonzero(scored.off_topic)
    flagged_idx = flagged_idx[np.argsort(-appeal[flagged_idx], kind="stable")]
    arrays = (
        scored.score.astype(np.float32),
        appeal.astype(np.float32),
        scored.topic_fit.astype(np.float32),
        scored.off_topic,
    )
    for a in arrays:
        a.setflags(write=False)  # shared between requests
    return _Scored(*arrays, off_topic=[str(block.product_ids[i]) for i in flagged_idx])


def explain(
    exhibition_id: str,
    version: str,
    block: ScoringBlock,
    query: np.ndarray,
    topic_emb: np.ndarray,
    calibration: TopicFit,
    threshold: float,
    offset: int,
    limit: int,
    fits: PerBlockCache,
    topic_key: str,
    rules: Rules | None = None,
    aligned: Aligned | None = None,
) -> ExplainedRanking:
    """Ranks [offset, offset+limit) of the block for the topic, explained; with `rules` (and
    the block's `aligned` facets) the exhibition's business rules apply (api.merch_rank)."""
    scored = fits.get(
        block, (version, topic_key, threshold), lambda: _score(block, query, topic_emb, calibration, threshold)
    )
    ids = block.product_ids
    if rules is None or aligned is None:
        idx = ranked_slice(scored.score, offset, limit)
        items = [
            ExplainedItem(
                product_id=str(ids[i]),
                score=float(scored.score[i]),
                appeal=float(scored.appeal[i]),
                topic_fit=float(scored.topic_fit[i]),
                off_topic=bool(scored.flagged[i]),
                rank=offset + j + 1,
            )
            for j, i in enumerate(idx)
        ]
        return ExplainedRanking(
            exhibition_id=exhibition_id,
            model_version=version,
            items=items,
            total_scored=len(ids),
            pending=list(block.pending),
            failed=list(block.failed),
            unknown=list(block.unknown),
            off_topic=scored.off_topic,
            all_off_topic=bool(len(ids) and len(scored.off_topic) == len(ids)),
            threshold=threshold,
        )
    a = arrange(block, scored.score, scored.flagged, aligned, rules, offset, limit)
    items = [
        ExplainedItem(
            product_id=str(ids[i]),
            score=a.scores[i],
            appeal=float(scored.appeal[i]),
            topic_fit=float(scored.topic_fit[i]),
            off_topic=bool(scored.flagged[i]),
            rank=offset + j + 1,
            boosts=a.boosts[i],
            pinned=i in a.pinned,
        )
        for j, i in enumerate(a.rows)
    ]
    hidden = set(a.blocked) | set(a.unavailable)
    off_topic = [p for p in scored.off_topic if p not in hidden] if hidden else scored.off_topic
    shown = len(ids) - int(a.excluded.sum())
    return ExplainedRanking(
        exhibition_id=exhibition_id,
        model_version=version,
        items=items,
        total_scored=len(ids),
        pending=list(block.pending),
        failed=list(block.failed),
        unknown=list(block.unknown),
        off_topic=off_topic,
        all_off_topic=bool(shown and len(off_topic) == shown),
        threshold=threshold,
        blocked=a.blocked,
        unavailable=a.unavailable,
        diverse=rules.diverse is not None,
    )
