"""Explained rankings: every product's appeal (CLIK's ranking score), topic fit (a calibrated
probability that it belongs to the topic) and final score (clik.topic_fit.score_products: appeal
plus how much the product looks like its exhibition, flagged products after all fitting ones).

The topic-fit features depend only on the exhibition's block and the topic, so they are computed
once per decoded block and topic and kept beside the process's block cache (a new block object
after any change of products or vectors means a new computation).
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from clik.topic_fit import TopicFit, product_features, score_products
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


class FitCache:
    """(decoded block, version, topic key) -> topic-fit features, LRU of `size` entries."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[int, str, str], tuple[weakref.ref, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, block: ScoringBlock, version: str, topic_key: str, compute) -> np.ndarray:
        """The cached array, or compute() (outside the lock: two threads may both compute)."""
        key = (id(block), version, topic_key)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0]() is block:
                self._entries.move_to_end(key)
                return hit[1]
        probabilities = compute()
        probabilities.setflags(write=False)
        with self._lock:
            self._entries[key] = (weakref.ref(block), probabilities)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return probabilities


def explain(exhibition_id: str, version: str, block: ScoringBlock, query: np.ndarray, topic_emb: np.ndarray,
            calibration: TopicFit, threshold: float, offset: int, limit: int, fits: FitCache,
            topic_key: str) -> ExplainedRanking:
    q = normalised_query(query, block.dim)
    t = normalised_query(topic_emb, block.dim)
    appeal = block.matrix @ q
    features = fits.get(block, version, topic_key, lambda: product_features(block.matrix, t))
    scored = score_products(appeal, features, calibration, threshold)
    score, flagged, fit = scored.score, scored.off_topic, scored.topic_fit
    idx = ranked_slice(score, offset, limit)
    ids = block.product_ids
    items = [ExplainedItem(product_id=str(ids[i]), score=float(score[i]), appeal=float(appeal[i]),
                           topic_fit=float(fit[i]), off_topic=bool(flagged[i]), rank=offset + j + 1)
             for j, i in enumerate(idx)]
    flagged_idx = np.flatnonzero(flagged)
    flagged_idx = flagged_idx[np.argsort(-appeal[flagged_idx], kind="stable")]
    return ExplainedRanking(
        exhibition_id=exhibition_id, model_version=version, items=items, total_scored=len(ids),
        pending=list(block.pending), failed=list(block.failed), unknown=list(block.unknown),
        off_topic=[str(ids[i]) for i in flagged_idx],
        all_off_topic=bool(len(ids) and flagged.all()), threshold=threshold)
