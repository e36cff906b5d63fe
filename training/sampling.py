"""Batch samplers of the paper's two tasks (3.3, 3.4), over prepared exhibitions.

Topic Matching: M (topic, image) pairs from M *different topic groups*: exhibitions that share a
group share a topic, so pairing one's topic with the other's image as a negative would teach the
model to separate identical topics.
Image Ranking: N exhibitions × K of their images; the positive is the best of the K sampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PreparedGroup:
    """One exhibition, reduced to what sampling needs."""

    exhibition_id: str
    group: str
    topic_row: int  # row of the topic in the topic feature/text table
    image_rows: np.ndarray  # (P,) rows in the image feature table (or indices of image sources)
    labels: np.ndarray  # (P,) criterion with off-topic products below every on-topic one
    on_topic: np.ndarray  # (P,) bool


@dataclass
class MatchingBatch:
    topic_rows: np.ndarray  # (M,)
    image_rows: np.ndarray  # (M,)


@dataclass
class RankingBatch:
    topic_rows: np.ndarray  # (N,)
    image_rows: np.ndarray  # (N, K)
    labels: np.ndarray  # (N, K)
    positive: np.ndarray  # (N,) index of the best of the K


class MatchingSampler:
    def __init__(self, groups: list[PreparedGroup], batch_size: int, rng: np.random.Generator):
        self.by_group: dict[str, list[PreparedGroup]] = {}
        for g in groups:
            if g.on_topic.any():
                self.by_group.setdefault(g.group, []).append(g)
        self.keys = sorted(self.by_group)
        if len(self.keys) < 2:
            raise ValueError("Topic Matching needs exhibitions from at least 2 topic groups")
        self.batch_size = min(batch_size, len(self.keys))
        self.rng = rng

    def sample(self) -> MatchingBatch:
        chosen = self.rng.choice(len(self.keys), size=self.batch_size, replace=False)
        topics, images = [], []
        for i in chosen:
            members = self.by_group[self.keys[i]]
            ex = members[self.rng.integers(len(members))]
            on = np.flatnonzero(ex.on_topic)
            topics.append(ex.topic_row)
            images.append(ex.image_rows[on[self.rng.integers(len(on))]])
        return MatchingBatch(np.asarray(topics), np.asarray(images))


class RankingSampler:
    """Epochs over the exhibitions in shuffled order, N per batch, K random images from each."""

    def __init__(
        self, groups: list[PreparedGroup], groups_per_batch: int, images_per_group: int, rng: np.random.Generator
    ):
        usable = [g for g in groups if len(g.image_rows) >= 2]
        if not usable:
            raise ValueError("Image Ranking needs exhibitions with at least 2 products")
        self.groups = usable
        self.n = min(groups_per_batch, len(usable))
        self.k = min(images_per_group, min(len(g.image_rows) for g in usable))
        self.rng = rng
        self._order: list[int] = []

    @property
    def batches_per_epoch(self) -> int:
        return max(1, -(-len(self.groups) // self.n))

    def _next_groups(self) -> list[PreparedGroup]:
        if len(self._order) < self.n:
            self._order.extend(self.rng.permutation(len(self.groups)).tolist())
        picked, self._order = self._order[: self.n], self._order[self.n :]
        return [self.groups[i] for i in picked]

    def sample(self) -> RankingBatch:
        topics, rows, labels, positive = [], [], [], []
        for g in self._next_groups():
            idx = self.rng.choice(len(g.image_rows), size=self.k, replace=False)
            lab = g.labels[idx]
            topics.append(g.topic_row)
            rows.append(g.image_rows[idx])
            labels.append(lab)
            positive.append(int(np.argmax(lab)))
        return RankingBatch(
            np.asarray(topics), np.stack(rows), np.stack(labels).astype(np.float32), np.asarray(positive)
        )
