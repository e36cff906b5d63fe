"""Catalogue search over the active version's product vectors (indexer.search_index).

The index lives in this process and is rebuilt from the store when the active version or the
store's catalogue generation (any product or vector change) differs from the one it was built
at; at most once per `min_rebuild_s`, so a busy catalogue is searched at most that stale.
A free-text search (GET /search, `TextSearch`) is the text's query by the active version against it.
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from api.queries import RankingQueries
from api.versions import ActiveVersions
from indexer.search_index import SearchIndex
from indexer.records import ModelVersion
from indexer.store import VectorStore


class CatalogueSearch:
    def __init__(self, store: VectorStore, directory: Path | None, min_rebuild_s: float) -> None:
        self.store = store
        # the index is never saved: a restarted process rebuilds from the store of record
        self.directory = directory or Path(tempfile.mkdtemp(prefix="clik-catalogue-"))
        self.min_rebuild_s = min_rebuild_s
        self._lock = threading.Lock()  # SearchIndex is not thread-safe
        self._index: SearchIndex | None = None
        self._stamp: tuple[str, int] | None = None
        self._built_at = float("-inf")
        self.rebuilds = 0

    def search(self, version: ModelVersion, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        stamp = (version.name, self.store.catalogue_generation())
        with self._lock:
            index = self._index
            if (index is None or index.version != version.name
                    or (self._stamp != stamp and time.monotonic() - self._built_at >= self.min_rebuild_s)):
                index = SearchIndex(self.directory, version.name, version.dim)
                index.rebuild(self.store.iter_product_vectors(version.name))
                self._index, self._stamp, self._built_at = index, stamp, time.monotonic()
                self.rebuilds += 1
            if len(index) == 0:
                return []
            return index.search(query, k)


class TextSearch:
    def __init__(self, index: CatalogueSearch, versions: ActiveVersions, queries: RankingQueries) -> None:
        self.index = index
        self.versions = versions
        self.queries = queries

    def search(self, text: str, k: int, model_version: str | None) -> tuple[str, list[tuple[str, float]]]:
        """(the version searched with, the k best (product id, score)) for a free-text topic."""
        version = self.versions.resolve(model_version)
        query = self.queries.query(version, {"name": text})
        return version.name, self.index.search(version, query, k)
