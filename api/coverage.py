"""The active version's coverage of the catalogue, as readiness and metrics report it.

Counting covers the whole catalogue (one pass over the products), so the figure is cached and
refreshed at most every ``refresh_s`` seconds, by the caller that finds it stale.
"""

from __future__ import annotations

import threading
import time

from indexer.records import Coverage
from indexer.store import VectorStore


class CoverageMonitor:
    def __init__(self, store: VectorStore, refresh_s: float) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._seen: tuple[float, str, Coverage] | None = None  # (when, version, coverage)

    def of(self, version: str) -> Coverage:
        """Coverage for `version` (StoreError when the store cannot be read)."""
        with self._lock:
            seen = self._seen
            if seen and seen[1] == version and time.monotonic() - seen[0] < self.refresh_s:
                return seen[2]
            coverage = self.store.coverage([version])
            self._seen = (time.monotonic(), version, coverage)
            return coverage

    def last_share(self) -> float | None:
        """The last measured share (for the metrics scrape; no store access)."""
        seen = self._seen
        return None if seen is None else seen[2].rankable_share(seen[1])
