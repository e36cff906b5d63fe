"""Values derived from one decoded exhibition block, cached beside the process's block cache.

A block object is replaced whenever its products, their attrs or vectors, or the exhibition
change (indexer.store.VectorStore.stamped_block), so a value keyed by the block object (and by
whatever else it was computed from) never goes stale; a weak reference tells a recycled id
apart. Used for the block scored for a topic (api.explained) and for its rows' business-rule
facets (api.merch_rank). Bounded by the bytes of the values (their `nbytes`).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from indexer.packed_block import ScoringBlock


class PerBlockCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[tuple, tuple[weakref.ref, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, block: ScoringBlock, key: tuple, compute: Callable[[], Any]) -> Any:
        """The cached value, or compute() (outside the lock: two threads may both compute)."""
        key = (id(block), *key)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0]() is block:
                self._entries.move_to_end(key)
                return hit[1]
        value = compute()
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1].nbytes
            self._entries[key] = (weakref.ref(block), value)
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
