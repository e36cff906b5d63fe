"""The entries of the store's topic cache: what a ranking needs of a topic, under a key every
process computes the same way.

The API reads these entries on a ranking; a worker writes them ahead of the first read (on an
exhibition PUT and for a new model version before it is activated: worker/precompute.py). Both
must agree on the key and on the layout of the value, which is why they live here, in the
library both import, and not in either service.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from .topic import TOPIC_KEYS, topic_key

# Entries hold the ranking query and the topic embedding, concatenated. The prefix keeps entries
# of another shape (a query alone, written by an older release) from being read back as these.
NAMESPACE = "qt:"


def clean_topic(topic: Mapping[str, object]) -> dict[str, str]:
    """Known keys only (a stored topic written by another tool may carry extras)."""
    return {k: str(topic[k]) for k in TOPIC_KEYS if topic.get(k) not in (None, "")}


def cache_key(attrs: Mapping[str, str]) -> str:
    """clik's topic key, hashed when it could not be a store id (long, or odd characters)."""
    key = topic_key(attrs)
    if len(key) > 256 or "\n" in key or "\0" in key:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def entry_key(topic: Mapping[str, object]) -> str:
    """The store key of a topic's entry (within its model version)."""
    return NAMESPACE + cache_key(clean_topic(topic))


class _Encodes(Protocol):
    def embeddings_and_queries(self, topics: Sequence[Mapping[str, object]]) -> tuple[np.ndarray, np.ndarray]: ...


def encode_entries(encoder: _Encodes, topics: Sequence[Mapping[str, str]]) -> np.ndarray:
    """(len(topics), 2d) float32: each row the ranking query then the topic embedding (one
    text-tower pass gives both)."""
    emb, query = encoder.embeddings_and_queries(list(topics))
    return np.concatenate([query, emb], axis=1).astype(np.float32)


def split_entry(entry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranking query, topic embedding) of one entry."""
    half = entry.shape[0] // 2
    return entry[:half], entry[half:]
