"""Precompute on write: an exhibition's topic query and its packed block, made before any read.

A first ranking of an exhibition used to encode its topic with the text tower (tens of ms) and
build its packed block (one pass over its products) while the shopper waited. Both results
live in the store, shared by every API process: the topic entry in the store's topic cache
(key and layout: clik.topic_cache) and the packed block beside its stamp. So the work can be
done once, here, by whoever has the time:

- a Celery worker, on ``clik.precompute_exhibitions`` sent by the API after an exhibition PUT
  (the Redis deployment);
- the re-index, for every exhibition and the new version, after the rollout gate and before
  the switch (``precompute_all``), so the first reads after an activation find the new
  version's topics and blocks ready;
- again after the vectors of an exhibition's products arrive (worker/refresh.py): the new
  vectors moved its stamp, so the block made before no longer serves.

Each run ends by announcing the exhibitions it did (store.announce_precomputed): one API process
then renders each one's default answer (api/announced.py), which the worker cannot do (the
answer's rules, shape and tag are the API's). (The embedded stack warms its single API process
directly instead: api/precompute.py.)
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from clik import topic_cache
from clik.encoders import TopicEncoder
from indexer.errors import ExhibitionNotFound, NoActiveVersion, StoreError
from indexer.store import VectorStore

log = logging.getLogger(__name__)

TOPIC_BATCH = 32  # topics per text-tower pass


@dataclass
class PrecomputeReport:
    version: str | None = None
    exhibitions: int = 0  # exhibitions whose block is now stored at its current stamp
    topics_encoded: int = 0  # topics run through the text tower here
    topics_cached: int = 0  # topics the store already had for this version
    gone: int = 0  # exhibitions deleted before their turn

    def add(self, other: PrecomputeReport) -> None:
        self.version = other.version
        self.exhibitions += other.exhibitions
        self.topics_encoded += other.topics_encoded
        self.topics_cached += other.topics_cached
        self.gone += other.gone

    def as_dict(self) -> dict:
        return asdict(self)


class TopicSides:
    """version -> its text side, loaded from the version's bundle; the last `size` kept."""

    def __init__(self, store: VectorStore, device: str | None = "cpu", size: int = 2) -> None:
        self.store, self.device, self.size = store, device, size
        self._loaded: OrderedDict[str, TopicEncoder] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, version: str) -> TopicEncoder:
        with self._lock:
            if version in self._loaded:
                self._loaded.move_to_end(version)
                return self._loaded[version]
        bundle = self.store.get_version(version).bundle_uri
        if not bundle:
            raise ValueError(f"model version {version} has no bundle location")
        encoder = TopicEncoder.load(Path(bundle.removeprefix("file://")), device=self.device)
        if encoder.version != version:
            raise ValueError(f"bundle at {bundle} is version {encoder.version}, not {version}")
        with self._lock:
            self._loaded[version] = encoder
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
        return encoder


def precompute(
    store: VectorStore,
    exhibition_ids: Sequence[str],
    topic_side: Callable[[str], TopicEncoder],
    version: str | None = None,
) -> PrecomputeReport:
    """Topic entries and packed blocks of these exhibitions for `version` (default: the active
    one). Topics the store already has are not encoded again; an exhibition deleted meanwhile
    is counted as gone. Idempotent: a redelivered task finds everything done."""
    if version is None:
        active = store.active_version()
        if active is None:
            raise NoActiveVersion("no model version has been activated")
        version = active.name
    report = PrecomputeReport(version=version)
    topics: dict[str, dict[str, str]] = {}  # entry key -> cleaned topic, each encoded once
    present: list[str] = []
    for eid in dict.fromkeys(exhibition_ids):
        try:
            topic = topic_cache.clean_topic(store.get_exhibition_topic(eid))
        except ExhibitionNotFound:
            report.gone += 1
            continue
        present.append(eid)
        topics.setdefault(topic_cache.entry_key(topic), topic)
    missing = [k for k in topics if store.get_topic_embedding(version, k) is None]
    report.topics_cached = len(topics) - len(missing)
    if missing:
        encoder = topic_side(version)
        for start in range(0, len(missing), TOPIC_BATCH):
            keys = missing[start : start + TOPIC_BATCH]
            entries = topic_cache.encode_entries(encoder, [topics[k] for k in keys])
            for key, entry in zip(keys, entries):
                store.put_topic_embedding(version, key, entry)
            report.topics_encoded += len(keys)
    done = []
    for eid in present:
        try:
            store.prepare_block(eid, version)
            done.append(eid)
        except ExhibitionNotFound:
            report.gone += 1
    report.exhibitions += len(done)
    try:  # the API processes render the answers now (api/announced.py); best effort
        store.announce_precomputed(version, done)
    except StoreError as exc:
        log.warning("precompute of %d exhibitions not announced: %s", len(done), exc)
    return report


def precompute_all(
    store: VectorStore, version: str, topic_side: Callable[[str], TopicEncoder], page: int = 500
) -> PrecomputeReport:
    """Every exhibition, for `version` (a re-index calls it before activating the version)."""
    report = PrecomputeReport(version=version)
    offset = 0
    while True:
        items = store.list_exhibitions(offset, page).items
        if not items:
            break
        report.add(precompute(store, [e.exhibition_id for e in items], topic_side, version))
        offset += page
    log.info(
        "precomputed %d exhibitions for %s (%d topics encoded)", report.exhibitions, version, report.topics_encoded
    )
    return report
