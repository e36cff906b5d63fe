"""One model version's catalogue index, shared by the processes of a host and kept current from
the store's change log.

Why: every API process used to rebuild its own index from the whole catalogue whenever anything
changed: every vector read from the store and the index built again, once per process. Now the
index lives in files (indexer.search_index: numbered generations, CURRENT swapped atomically)
that the processes map read-only, so they share one copy of its pages. When the store's
catalogue generation moves, one process, whichever takes the folder's lock, applies only the
products changed since the generation the files reflect (``store.catalogue_changes``: their
vectors read again, removed where gone), saves a new generation, and searches its own copy;
the others map the new files on their next look. A first build, or a change log that no longer
reaches back that far (trimmed, another store), reads the whole catalogue once.
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path

from indexer.records import ModelVersion
from indexer.search_index import SearchIndex, SearchIndexConfig, index_folder, saved_generation
from indexer.store import VectorStore


@dataclass
class SyncCounts:
    rebuilds: int = 0  # whole-catalogue builds by this process
    updates: int = 0  # incremental catch-ups by this process
    products_applied: int = 0  # changed products those catch-ups re-read
    maps: int = 0  # saved generations this process mapped (written by another one)


class SharedSearchIndex:
    def __init__(
        self, store: VectorStore, directory: Path, version: ModelVersion, config: SearchIndexConfig | None = None
    ) -> None:
        self.store = store
        self.directory = directory
        self.version = version
        # the version's id is in the name: a version dropped and registered again under the
        # same name has other vectors, and must not find the old files
        self.key = f"{version.name}.{version.id}"
        self.config = config
        self.counts = SyncCounts()
        self._own: SearchIndex | None = None  # writable: this process saved or loaded it to update
        self._mapped: SearchIndex | None = None  # read-only mapping of files another process saved

    @property
    def current(self) -> SearchIndex | None:
        """The index searches use now (None before the first refresh)."""
        return self._own if self._own is not None else self._mapped

    def refresh(self, generation: int, wait: bool) -> SearchIndex | None:
        """Bring the shared index to the store's catalogue `generation` when this process can
        take the folder's lock (waiting for it when `wait`: a process with nothing to search
        yet); when another process holds it, use the newest saved generation meanwhile."""
        folder = self._folder()
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return self._map_newest()
            try:
                return self._catch_up(generation)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _folder(self) -> Path:
        return index_folder(self.directory, self.key)

    def _catch_up(self, generation: int) -> SearchIndex:
        saved = saved_generation(self.directory, self.key)
        index = self._own
        if index is None or index.file_generation != saved:  # another process saved since: start from its files
            index = SearchIndex(self.directory, self.key, self.version.dim, self.config)
        if saved == 0 or index.catalogue_generation != generation:
            self._apply_changes(index)
            index.save()
        self._own, self._mapped = index, None
        return index

    def _apply_changes(self, index: SearchIndex) -> None:
        changes = self.store.catalogue_changes(index.catalogue_generation) if index.file_generation else None
        if changes is None:
            # read before the vectors: a change made during the scan is applied again next time
            generation = self.store.catalogue_generation()
            index.rebuild(self.store.iter_product_vectors(self.version.name))
            index.catalogue_generation = generation
            self.counts.rebuilds += 1
            return
        ids, vectors = self.store.product_vectors(self.version.name, changes.product_ids)
        index.remove(set(changes.product_ids) - set(ids))
        if ids:
            index.add(ids, vectors)
        index.catalogue_generation = changes.generation
        self.counts.updates += 1
        self.counts.products_applied += len(changes.product_ids)

    def _map_newest(self) -> SearchIndex | None:
        for _ in range(3):  # the files of a generation go when the next one is saved: look again
            saved = saved_generation(self.directory, self.key)
            current = self.current
            if saved == 0 or (current is not None and current.file_generation == saved):
                return current
            try:
                mapped = SearchIndex(self.directory, self.key, self.version.dim, self.config, mmap=True)
            except (FileNotFoundError, RuntimeError):  # faiss reports a vanished file as RuntimeError
                continue
            self._own, self._mapped = None, mapped
            self.counts.maps += 1
            return mapped
        return self.current
