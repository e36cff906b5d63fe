"""Catalogue search over the active version's product vectors (indexer.shared_search_index).

The index is one per host and model version, in files every API process of the host maps
(the folder: `catalogue_dir`, by default one per store under the system's temporary folder).
When the store's catalogue generation moved, at most once per `min_refresh_s` a process brings
it up to date with the products changed since (whichever process takes the folder's lock; the
others keep searching what is saved meanwhile), so a busy catalogue is searched at most about
that stale, and nothing is rebuilt per process.
A free-text search (GET /search, `TextSearch`) is the text's query by the active version against it.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from api.queries import RankingQueries
from api.versions import ActiveVersions
from indexer.config import DEFAULT_EMBEDDED_PATH
from indexer.contracts import is_redis_url
from indexer.records import ModelVersion
from indexer.shared_search_index import SharedSearchIndex
from indexer.store import VectorStore


def default_catalogue_dir(store_url: str | None, store_prefix: str) -> Path:
    """The same folder for every process of this host serving the same store (an embedded
    store by its absolute path: two working folders' default stores are different stores)."""
    where = (
        store_url
        if is_redis_url(store_url)
        else str((Path(store_url.removeprefix("file://")) if store_url else DEFAULT_EMBEDDED_PATH).resolve())
    )
    digest = hashlib.blake2b(f"{where}|{store_prefix}".encode(), digest_size=8).hexdigest()
    return Path(tempfile.gettempdir()) / "clik-catalogue" / digest


class CatalogueSearch:
    def __init__(self, store: VectorStore, directory: Path, min_refresh_s: float) -> None:
        self.store = store
        self.directory = directory
        self.min_refresh_s = min_refresh_s
        self._lock = threading.Lock()  # SearchIndex is not thread-safe
        self._shared: SharedSearchIndex | None = None
        self._refreshed_at = float("-inf")

    @property
    def shared(self) -> SharedSearchIndex | None:
        return self._shared

    def search(self, version: ModelVersion, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        generation = self.store.catalogue_generation()
        with self._lock:
            shared = self._shared
            if shared is None or (shared.version.name, shared.version.id) != (version.name, version.id):
                shared = self._shared = SharedSearchIndex(self.store, self.directory, version)
            index = shared.current
            stale = index is None or index.catalogue_generation != generation
            if stale and (index is None or time.monotonic() - self._refreshed_at >= self.min_refresh_s):
                index = shared.refresh(generation, wait=index is None)
                self._refreshed_at = time.monotonic()
            if index is None or len(index) == 0:
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
