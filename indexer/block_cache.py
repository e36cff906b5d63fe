"""Process-local LRU of decoded packed blocks, bounded by bytes.

A warm ranking asks the store only for the block's current stamp (a few bytes); when the
stamp still matches the cached one the scoring runs on memory the process already holds.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from indexer.packed_block import ScoringBlock


@dataclass(frozen=True)
class CachedBlock:
    version: str
    stamp: str
    block: ScoringBlock


class BlockCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], CachedBlock] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, exhibition_id: str, version: str) -> CachedBlock | None:
        with self._lock:
            item = self._items.get((exhibition_id, version))
            if item is not None:
                self._items.move_to_end((exhibition_id, version))
            return item

    def put(self, exhibition_id: str, item: CachedBlock) -> None:
        size = item.block.nbytes
        with self._lock:
            old = self._items.pop((exhibition_id, item.version), None)
            if old is not None:
                self._bytes -= old.block.nbytes
            if size > self.max_bytes:
                return  # bigger than the whole budget: score it once, do not evict everyone else
            self._items[(exhibition_id, item.version)] = item
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.block.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
