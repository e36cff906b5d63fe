"""Canary of a rollout: rank a sample of exhibitions with the active and the new version and
say how much changes, before anything is switched.

Figures per sample: top-1 changes, Spearman rank correlation of the products both versions
score, and the share of exhibitions whose top product looks off-topic under each version (its
topic similarity an outlier of its own exhibition: clik.topic_fit.looks_off_topic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from clik.topic_fit import looks_off_topic
from indexer.errors import StoreError
from indexer.store import VectorStore

# (topic attributes) -> (unit topic embedding, unit ranking query) for one version
TopicSide = Callable[[dict], tuple[np.ndarray, np.ndarray]]


@dataclass
class CanaryReport:
    exhibitions: int = 0  # compared (with products scored by both versions)
    top1_changed: int = 0
    top1_agreement: float = 1.0
    rank_correlation: float = 1.0  # mean Spearman over the compared exhibitions
    offtopic_top1: dict[str, float] = field(default_factory=lambda: {"active": 0.0, "new": 0.0})
    changes: list[dict] = field(default_factory=list)  # a few {exhibition, active, new} top-1 changes

    def as_dict(self) -> dict:
        return asdict(self)


def sample_exhibitions(store: VectorStore, n: int) -> list[str]:
    """Up to n exhibition ids spread evenly over the id order (deterministic: the same sample for
    the same catalogue)."""
    total = store.list_exhibitions(0, 1).total
    if total == 0 or n <= 0:
        return []
    step = max(total / n, 1.0)
    ids = []
    for i in range(min(n, total)):
        page = store.list_exhibitions(int(i * step), 1).items
        ids += [e.exhibition_id for e in page]
    return ids


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2:
        return 1.0
    ra, rb = np.argsort(np.argsort(a)).astype(float), np.argsort(np.argsort(b)).astype(float)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom else 1.0


def _scores(store: VectorStore, eid: str, version: str, side: TopicSide, topic: dict):
    _, block = store.scoring_block(eid, version)
    if len(block.product_ids) == 0:
        return None
    topic_emb, query = side(topic)
    matrix = np.asarray(block.matrix, dtype=np.float32)
    ids = [str(p) for p in block.product_ids]
    return ids, matrix @ query, matrix @ topic_emb


def run_canary(
    store: VectorStore, active: str, new: str, sides: Callable[[str], TopicSide], sample: int
) -> CanaryReport:
    report = CanaryReport()
    correlations, off = [], {"active": 0, "new": 0}
    chosen = sample_exhibitions(store, sample)
    if not chosen:
        return report  # nothing to compare: no text tower is loaded for nothing
    active_side, new_side = sides(active), sides(new)
    for eid in chosen:
        try:
            topic = store.get_exhibition_topic(eid)
            a = _scores(store, eid, active, active_side, topic)
            b = _scores(store, eid, new, new_side, topic)
        except StoreError:
            continue  # deleted meanwhile
        if a is None or b is None:
            continue
        common = sorted(set(a[0]) & set(b[0]))
        if not common:
            continue
        report.exhibitions += 1
        pos_a, pos_b = {p: i for i, p in enumerate(a[0])}, {p: i for i, p in enumerate(b[0])}
        sa = np.array([a[1][pos_a[p]] for p in common])
        sb = np.array([b[1][pos_b[p]] for p in common])
        correlations.append(_spearman(sa, sb))
        top_a, top_b = int(np.argmax(a[1])), int(np.argmax(b[1]))
        if a[0][top_a] != b[0][top_b]:
            report.top1_changed += 1
            if len(report.changes) < 5:
                report.changes.append({"exhibition": eid, "active": a[0][top_a], "new": b[0][top_b]})
        off["active"] += bool(looks_off_topic(a[2])[top_a])
        off["new"] += bool(looks_off_topic(b[2])[top_b])
    if report.exhibitions:
        report.top1_agreement = 1 - report.top1_changed / report.exhibitions
        report.rank_correlation = float(np.mean(correlations))
        report.offtopic_top1 = {k: v / report.exhibitions for k, v in off.items()}
    return report


def bundle_topic_sides(store: VectorStore, device: str | None = "cpu") -> Callable[[str], TopicSide]:
    """version -> its text side loaded from the version's bundle (each loaded once per call site)."""
    from pathlib import Path

    from clik.encoders import TopicEncoder

    loaded: dict[str, TopicEncoder] = {}

    def side_of(version: str) -> TopicSide:
        if version not in loaded:
            bundle = store.get_version(version).bundle_uri
            if not bundle:
                raise ValueError(f"model version {version} has no bundle location")
            loaded[version] = TopicEncoder.load(Path(bundle.removeprefix("file://")), device=device)
        encoder = loaded[version]

        def encode(topic: dict) -> tuple[np.ndarray, np.ndarray]:
            emb, query = encoder.embeddings_and_queries([topic])
            return emb[0], query[0]

        return encode

    return side_of
