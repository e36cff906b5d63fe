"""Catalogue search: top products of the whole catalogue for a query, one FAISS index per
model version.

Exact inner product (IndexFlatIP) up to `exact_threshold` vectors, an inverted-file index
(IndexIVFFlat, inner product) above it; docs/indexer.md gives the measurements behind the
default threshold. The index is persisted in a directory and swapped in atomically: files of
generation n are written first, then the CURRENT pointer is replaced (os.replace), so a crash
leaves the previous generation readable.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from indexer.errors import InvalidInput, InvalidVector
from indexer.vectors import normalised_query


@dataclass(frozen=True)
class SearchIndexConfig:
    # Exact search scans every vector: 200k x 128 float32 = 100 MB per query, ~15 ms here.
    # Past that an approximate index keeps queries near 1 ms (see docs/indexer.md).
    exact_threshold: int = 200_000
    nprobe: int = 32  # IVF lists visited per query: recall/latency trade-off
    train_points_per_list: int = 64  # k-means sample = nlist * this (FAISS warns below 39)
    # One query is too little work to split: OpenMP start-up made a single exact search of
    # 100k vectors 12x slower with 2 threads than with 1 on the 2-core dev machine.
    search_threads: int = 1


def index_folder(directory: Path | str, version: str) -> Path:
    """Where the files of one version's index live under `directory`."""
    return Path(directory) / re.sub(r"[^A-Za-z0-9._-]", "_", version)


def saved_generation(directory: Path | str, version: str) -> int:
    """The file generation CURRENT points at (0: nothing saved): a cheap staleness check."""
    try:
        return int((index_folder(directory, version) / "CURRENT").read_text().strip())
    except (FileNotFoundError, ValueError):
        return 0


class SearchIndex:
    """One version's catalogue index. Not thread-safe: one writer (the index job) at a time.

    `catalogue_generation` is the store's catalogue generation the index reflects (saved with
    it), `file_generation` the saved generation it was loaded from or last saved as. With
    `mmap` the saved index is mapped read-only (processes reading the same files share their
    pages); such an index searches but cannot change."""

    def __init__(
        self, directory: Path | str, version: str, dim: int, config: SearchIndexConfig | None = None, mmap: bool = False
    ) -> None:
        self.dim = dim
        self.version = version
        self.config = config or SearchIndexConfig()
        self.directory = index_folder(directory, version)
        self.read_only = mmap
        self._index: faiss.Index = self._new_exact()
        self._ids: dict[str, int] = {}  # product id -> faiss id
        self._pids: dict[int, str] = {}  # faiss id -> product id
        self._next_id = 0
        self.catalogue_generation = 0
        self.file_generation = 0
        self._load()

    # -- persistence --------------------------------------------------------------------------
    def _load(self) -> None:
        current = self.directory / "CURRENT"
        if not current.exists():
            return
        gen = current.read_text().strip()
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if self.read_only else 0
        index = faiss.read_index(str(self.directory / f"index-{gen}.faiss"), flags)
        if index.d != self.dim:
            raise InvalidInput(f"catalogue index in {self.directory} has dim {index.d}, not {self.dim}")
        meta = json.loads((self.directory / f"ids-{gen}.json").read_text())
        self._index, self._next_id = index, int(meta["next_id"])
        self._ids = {p: int(i) for p, i in meta["ids"].items()}
        self._pids = {i: p for p, i in self._ids.items()}
        self.catalogue_generation = int(meta.get("catalogue_generation", 0))
        self.file_generation = int(gen)
        self._apply_search_params()

    def save(self) -> None:
        """Write a new generation, then point CURRENT at it atomically; old files are removed
        (a process still mapping them keeps its pages until it loads the new generation)."""
        self._writable()
        self.directory.mkdir(parents=True, exist_ok=True)
        current = self.directory / "CURRENT"
        old = current.read_text().strip() if current.exists() else None
        gen = str(int(old) + 1 if old else 1)
        faiss.write_index(self._index, str(self.directory / f"index-{gen}.faiss"))
        (self.directory / f"ids-{gen}.json").write_text(
            json.dumps({"next_id": self._next_id, "ids": self._ids, "catalogue_generation": self.catalogue_generation})
        )
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".CURRENT.")
        with os.fdopen(fd, "w") as f:
            f.write(gen)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, current)
        self.file_generation = int(gen)
        if old:
            for name in (f"index-{old}.faiss", f"ids-{old}.json"):
                (self.directory / name).unlink(missing_ok=True)

    # -- building -----------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return "exact" if isinstance(self._index, faiss.IndexIDMap) else "ivf"

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def _new_exact(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _new_ivf(self, sample: np.ndarray, n_expected: int) -> faiss.Index:
        # sqrt(n) lists keeps both the coarse search and the scanned lists small
        nlist = max(16, 2 ** round(math.log2(math.sqrt(n_expected))))
        nlist = min(nlist, max(16, len(sample) // self.config.train_points_per_list))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        take = min(len(sample), nlist * self.config.train_points_per_list)
        index.train(sample[rng.choice(len(sample), take, replace=False)])
        return index

    def _apply_search_params(self) -> None:
        if isinstance(self._index, faiss.IndexIVF):
            self._index.nprobe = self.config.nprobe

    def _checked(self, product_ids: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        mat = np.asarray(vectors, dtype=np.float32)
        if mat.ndim != 2 or mat.shape[1] != self.dim or mat.shape[0] != len(product_ids):
            raise InvalidVector(f"expected a ({len(product_ids)}, {self.dim}) matrix, got {mat.shape}")
        if not np.all(np.isfinite(mat)):
            raise InvalidVector("catalogue vectors contain NaN or infinite values")
        if len(set(product_ids)) != len(product_ids):
            raise InvalidInput("duplicate product ids in one add")
        norms = np.linalg.norm(mat, axis=1, keepdims=True)
        if np.any(norms < 1e-12):
            raise InvalidVector("zero vector cannot be L2-normalised")
        return np.ascontiguousarray(mat / norms)

    def add(self, product_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add or replace products (incremental growth). Crossing the threshold converts the
        exact index into an IVF one trained on everything held so far."""
        self._writable()
        mat = self._checked(product_ids, vectors)
        self.remove([p for p in product_ids if p in self._ids])
        if self.kind == "exact" and len(self) + len(mat) > self.config.exact_threshold:
            self._convert_to_ivf(mat)
        ids = np.arange(self._next_id, self._next_id + len(mat), dtype=np.int64)
        self._next_id += len(mat)
        self._index.add_with_ids(mat, ids)
        for p, i in zip(product_ids, ids.tolist()):
            self._ids[p], self._pids[i] = i, p

    def _convert_to_ivf(self, incoming: np.ndarray) -> None:
        flat = faiss.downcast_index(self._index.index)
        held = faiss.rev_swig_ptr(flat.get_xb(), len(self) * self.dim).reshape(len(self), self.dim).copy()
        held_ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        ivf = self._new_ivf(np.vstack([held, incoming]), len(held) + len(incoming))
        if len(held):
            ivf.add_with_ids(held, held_ids)
        self._index = ivf
        self._apply_search_params()

    def _writable(self) -> None:
        if self.read_only:
            raise InvalidInput("a memory-mapped catalogue index is read-only: load it without mmap to change it")

    def remove(self, product_ids: Iterable[str]) -> int:
        self._writable()
        ids = [self._ids.pop(p) for p in product_ids if p in self._ids]
        for i in ids:
            del self._pids[i]
        if ids:
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))
        return len(ids)

    def rebuild(self, batches: Iterable[tuple[Sequence[str], np.ndarray]]) -> None:
        """Replace the whole index (re-index to a new version): the kind follows the size."""
        self._writable()
        pids: list[str] = []
        mats: list[np.ndarray] = []
        for ids, mat in batches:
            pids += list(ids)
            mats.append(np.asarray(mat, dtype=np.float32))
        mat = self._checked(pids, np.vstack(mats) if mats else np.empty((0, self.dim), np.float32))
        if len(mat) > self.config.exact_threshold:
            self._index = self._new_ivf(mat, len(mat))
            self._apply_search_params()
        else:
            self._index = self._new_exact()
        self._ids, self._pids, self._next_id = {}, {}, 0
        if len(mat):
            self.add(pids, mat)

    # -- search -------------------------------------------------------------------------------
    def search(self, query: object, k: int = 10) -> list[tuple[str, float]]:
        """Top k (product_id, cosine score), best first."""
        if k < 1:
            raise InvalidInput("k must be >= 1")
        q = normalised_query(query, self.dim).reshape(1, -1)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.config.search_threads)
        try:
            scores, ids = self._index.search(q, min(k, max(1, len(self))))
        finally:
            faiss.omp_set_num_threads(threads)
        return [(self._pids[i], float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]
