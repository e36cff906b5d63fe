"""Ranking queries of topics, cached per (model version, topic key): an in-process LRU in front
of the store's topic cache (shared by API replicas) in front of the text tower."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Callable, Mapping

import numpy as np

from clik.topic import TOPIC_KEYS, topic_key
from indexer.store import VectorStore


def clean_topic(topic: Mapping[str, object]) -> dict[str, str]:
    """Known keys only (a stored topic written by another tool may carry extras)."""
    return {k: str(topic[k]) for k in TOPIC_KEYS if topic.get(k) not in (None, "")}


def cache_key(attrs: Mapping[str, str]) -> str:
    """clik's topic key, hashed when it could not be a store id (long, or odd characters)."""
    key = topic_key(attrs)
    if len(key) > 256 or "\n" in key or "\0" in key:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


class TopicQueries:
    def __init__(self, store: VectorStore, size: int, namespace: str = "",
                 on_lookup: Callable[[str], None] = lambda result: None) -> None:
        self.store = store
        self.size = size
        # Prefix of the store's cache keys: entries of another shape (a query alone, written by
        # an older release) are never read back as this one.
        self.namespace = namespace + ":" if namespace else ""
        self.on_lookup = on_lookup  # "memory" | "store" | "miss" (metrics)
        self._lru: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def query(self, version: str, topic: Mapping[str, object],
              encode: Callable[[dict[str, str]], np.ndarray]) -> np.ndarray:
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
