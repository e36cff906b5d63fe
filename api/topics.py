"""Ranking queries of topics, cached per (model version, topic key): an in-process LRU in front
of the store's topic cache (shared by API replicas) in front of the text tower."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Mapping

import numpy as np

from clik.topic_cache import cache_key, clean_topic
from indexer.store import VectorStore


class TopicQueries:
    def __init__(
        self, store: VectorStore, size: int, namespace: str = "", on_lookup: Callable[[str], None] = lambda result: None
    ) -> None:
        self.store = store
        self.size = size
        # Prefix of the store's cache keys (clik.topic_cache.NAMESPACE for the API's entries).
        self.namespace = namespace
        self.on_lookup = on_lookup  # "memory" | "store" | "miss" (metrics)
        self._lru: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def query(
        self, version: str, topic: Mapping[str, object], encode: Callable[[dict[str, str]], np.ndarray]
    ) -> np.ndarray:
        """The float32 query of `topic` for `version`; `encode` runs the text side on a miss."""
        attrs = clean_topic(topic)
        key = (version, self.namespace + cache_key(attrs))
        with self._lock:
            hit = self._lru.get(key)
            if hit is not None:
                self._lru.move_to_end(key)
        if hit is not None:
            self.on_lookup("memory")
            return hit
        vector = self.store.get_topic_embedding(version, key[1])
        if vector is not None:
            self.on_lookup("store")
        else:
            self.on_lookup("miss")
            vector = np.asarray(encode(attrs), dtype=np.float32)
            self.store.put_topic_embedding(version, key[1], vector)
        self._remember(key, vector)
        return vector

    def _remember(self, key: tuple[str, str], vector: np.ndarray) -> None:
        if self.size <= 0:
            return
        vector.setflags(write=False)  # shared between requests
        with self._lock:
            self._lru[key] = vector
            self._lru.move_to_end(key)
            while len(self._lru) > self.size:
                self._lru.popitem(last=False)
