"""The store interface shared by the Redis and the embedded backends.

Backends implement the storage primitives; ranking (cache, decode, score) lives here once so
both backends rank identically and the shared test suite checks one behaviour.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from indexer.async_reads import ThreadedReads
from indexer.block_cache import BlockCache, CachedBlock
from indexer.errors import InvalidInput
from indexer.packed_block import ScoringBlock, decode_block
from indexer.pending import DEFAULT_LEASE_S, PendingSet
from indexer.ranking import cosine_scores, ranked_slice
from indexer.records import (
    CatalogueChanges,
    Coverage,
    Exhibition,
    ExhibitionPage,
    ModelVersion,
    Product,
    RankedProduct,
    ExhibitionRanking,
    VersionState,
)
from indexer.vectors import normalised_query

DEFAULT_CACHE_BYTES = 512 * 1024 * 1024
DEFAULT_EXPECTED_VECTORS = 1_000_000
MAX_ATTRS_BYTES = 64 * 1024  # product attributes are a label for people, not a document store

# update_jobs: what `change` receives (every id asked for, None where no record) and returns
JobRecords = dict[str, dict | None]
JobChange = Callable[[JobRecords], Mapping[str, Mapping[str, object]]]


def encode_attrs(attrs: Mapping[str, object] | None) -> str | None:
    """Product attributes as canonical JSON (None stays None: keep the stored ones)."""
    if attrs is None:
        return None
    if not isinstance(attrs, Mapping) or not all(isinstance(k, str) for k in attrs):
        raise InvalidInput("attrs must be a mapping with string keys")
    try:
        text = json.dumps(dict(attrs), sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"attrs are not JSON-serialisable: {exc}") from None
    if len(text.encode()) > MAX_ATTRS_BYTES:
        raise InvalidInput(f"attrs larger than {MAX_ATTRS_BYTES} bytes as JSON")
    return text


def checked_writes(job_ids: Sequence[str], writes: Mapping[str, Mapping[str, object]]) -> dict[str, str]:
    """update_jobs' writes as JSON documents, refused when one was not read first (its
    atomicity would mean nothing)."""
    unread = sorted(set(writes) - set(job_ids))
    if unread:
        raise InvalidInput(f"update_jobs: records written but not read: {', '.join(unread)}")
    return {job_id: json.dumps(dict(record), sort_keys=True) for job_id, record in writes.items()}


def check_page(offset: int, limit: int) -> None:
    if offset < 0 or limit < 1:
        raise InvalidInput("offset must be >= 0 and limit >= 1")


class VectorStore(abc.ABC):
    """Products, exhibitions, versioned image vectors, the version registry and topic cache."""

    def __init__(self, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._blocks = BlockCache(cache_bytes)
        # exhibition id -> version of the block this process scored last (see _latest)
        self._last_version: dict[str, str] = {}

    # -- products ---------------------------------------------------------------------------
    @abc.abstractmethod
    def put_product(self, product_id: str, image_source: str, attrs: Mapping[str, object] | None = None) -> Product:
        """Create or update a product. A new image source resets it to pending (new image).

        attrs: a JSON-serialisable mapping (titles for operators; availability, family and
        numbers for the business rules, so a change of them bumps the exhibitions listing the
        product); None keeps the stored attributes.
        """

    @abc.abstractmethod
    def get_product(self, product_id: str) -> Product:
        """Raises ProductNotFound."""

    @abc.abstractmethod
    def mark_encoded(self, product_id: str, image_hash: str) -> Product:
        """The product's image was fetched: record its content hash and status encoded."""

    @abc.abstractmethod
    def mark_failed(self, product_id: str, reason: str) -> Product:
        """The product's image could not be fetched or decoded."""

    def import_products(self, items: Sequence[tuple[str, str, str | None]]) -> None:
        """Bulk put_product (+ mark_encoded when an image hash is given): catalogue imports.

        Each product is updated atomically; backends override this to batch round trips.
        """
        for product_id, image_source, image_hash in items:
            self.put_product(product_id, image_source)
            if image_hash is not None:
                self.mark_encoded(product_id, image_hash)

    @abc.abstractmethod
    def get_attrs(self, product_ids: Sequence[str]) -> dict[str, dict]:
        """The attributes of these products in one read (products without any, or unknown, are
        left out): what business rules (availability, families, boosts) need of a block."""

    @abc.abstractmethod
    def delete_product(self, product_id: str) -> None:
        """Raises ProductNotFound. Exhibitions listing it then report it as unknown."""

    # -- exhibitions ------------------------------------------------------------------------
    @abc.abstractmethod
    def put_exhibition(self, exhibition_id: str, topic: Mapping[str, str], product_ids: Sequence[str]) -> Exhibition:
        """Create or replace an exhibition. Duplicate product ids keep their first position.

        Product ids need not be registered yet (events arrive in any order): rankings list
        them as unknown until they are.
        """

    @abc.abstractmethod
    def get_exhibition(self, exhibition_id: str) -> Exhibition:
        """Raises ExhibitionNotFound."""

    @abc.abstractmethod
    def delete_exhibition(self, exhibition_id: str) -> None:
        """Raises ExhibitionNotFound."""

    @abc.abstractmethod
    def exhibitions_of(self, product_ids: Sequence[str]) -> list[str]:
        """The exhibitions listing any of these products, sorted (unknown products: none)."""

    def get_exhibition_topic(self, exhibition_id: str) -> dict[str, str]:
        """Only the topic (rankings need it, not the possibly long product list)."""
        return self.get_exhibition(exhibition_id).topic

    @abc.abstractmethod
    def list_exhibitions(self, offset: int = 0, limit: int = 50) -> ExhibitionPage:
        """Exhibitions ordered by id, [offset, offset+limit), with the total count."""

    # -- model versions ---------------------------------------------------------------------
    @abc.abstractmethod
    def register_version(
        self, name: str, dim: int, bundle_uri: str = "", expected_vectors: int = DEFAULT_EXPECTED_VECTORS
    ) -> ModelVersion:
        """Register a version in state filling. Idempotent for the same dim.

        expected_vectors sizes the storage layout (Redis: index buckets); a wrong guess only
        costs memory, never correctness.
        """

    @abc.abstractmethod
    def get_version(self, name: str) -> ModelVersion:
        """Raises VersionNotFound."""

    @abc.abstractmethod
    def list_versions(self) -> list[ModelVersion]: ...

    @abc.abstractmethod
    def active_version(self) -> ModelVersion | None: ...

    @abc.abstractmethod
    def set_version_state(self, name: str, state: VersionState) -> ModelVersion: ...

    @abc.abstractmethod
    def activate(self, name: str) -> ModelVersion:
        """Atomically make `name` the version rankings use by default (state becomes ready)."""

    @abc.abstractmethod
    def drop_version(self, name: str) -> None:
        """Delete a version and all its vectors, blocks and cached topics. Refuses the active
        one (VersionInUse)."""

    # -- vectors ----------------------------------------------------------------------------
    @abc.abstractmethod
    def put_vector(self, version: str, image_hash: str, vector: object) -> None:
        """Store an image vector (validated, L2-normalised, fp16). Shared images are stored once."""

    @abc.abstractmethod
    def put_vectors(self, version: str, items: Sequence[tuple[str, object]]) -> None:
        """Store many (image_hash, vector) pairs at once (one atomic write): re-index chunks."""

    @abc.abstractmethod
    def get_vector(self, version: str, image_hash: str) -> np.ndarray:
        """The stored fp16 vector. Raises VectorNotFound / VersionNotFound."""

    @abc.abstractmethod
    def has_vector(self, version: str, image_hash: str) -> bool: ...

    @abc.abstractmethod
    def missing_vectors(self, version: str, limit: int = 1000) -> list[tuple[str, str]]:
        """(image_hash, image_source) of encoded products lacking a vector for `version`:
        the work list of a re-index job. Each hash appears once."""

    @abc.abstractmethod
    def coverage(self, versions: Sequence[str]) -> Coverage:
        """Products, encoded products, and for each version how many encoded products have a
        vector in it (one pass over the catalogue). Unknown versions count 0."""

    @abc.abstractmethod
    def iter_product_vectors(self, version: str, batch_size: int = 10_000) -> Iterator[tuple[list[str], np.ndarray]]:
        """Every encoded product having a vector for `version`, in batches of
        (product_ids, fp16 matrix): the input of a catalogue index rebuild."""

    @abc.abstractmethod
    def catalogue_generation(self) -> int:
        """A counter that moves whenever a product or a vector changes: a catalogue index built
        at generation g is current while this still returns g."""

    @abc.abstractmethod
    def catalogue_changes(self, since: int) -> CatalogueChanges | None:
        """The products changed after catalogue generation `since` (product, status, image or
        vector in any version), with the generation that brings an index built at `since` up
        to date; None when the change log no longer reaches back that far (or `since` is not
        this store's): the caller rebuilds from iter_product_vectors."""

    @abc.abstractmethod
    def product_vectors(self, version: str, product_ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The products among `product_ids` that are encoded and have a vector for `version`,
        and their fp16 vectors (rows in that order): an incremental catalogue update's input."""

    # -- topic-embedding cache ----------------------------------------------------------------
    @abc.abstractmethod
    def put_topic_embedding(self, version: str, topic_key: str, vector: object) -> None: ...

    @abc.abstractmethod
    def get_topic_embedding(self, version: str, topic_key: str) -> np.ndarray | None:
        """float32 vector, or None when not cached. Raises VersionNotFound."""

    # -- job records (re-index progress) --------------------------------------------------------
    @abc.abstractmethod
    def put_job(self, job_id: str, record: Mapping[str, object]) -> None:
        """Replace a small JSON record: a long-running job's progress (``reindex:<version>``),
        or settings that travel with the store (``settings:sources``); readable by any process
        (CLI, API, workers) through get_job."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> dict | None:
        """The last record written by put_job, or None."""

    @abc.abstractmethod
    def update_jobs(self, job_ids: Sequence[str], change: JobChange) -> None:
        """Read-check-write of several records as one step: `change` gets the current records
        of `job_ids` and returns the ones to replace (a subset of `job_ids`; raising writes
        nothing and the exception comes out of here). No other update_jobs lands between the
        read and the write (a check such as "nobody holds this binding" stays true until the
        write), so `change` may be called more than once and must only compute. Redis:
        WATCH/MULTI, retried when a watched record moved; a Redis Cluster: a lock record (the
        records lie in several slots); embedded: one write transaction."""

    # -- the workers' pending set ------------------------------------------------------------
    @abc.abstractmethod
    def pending_set(self, lease_s: float = DEFAULT_LEASE_S) -> PendingSet | None:
        """The products waiting to be encoded, shared by the workers (indexer.pending), in this
        store's key space; None when the backend keeps none (its products are encoded as their
        events arrive). Claims hold an entry for `lease_s` unless renewed."""

    # -- housekeeping -------------------------------------------------------------------------
    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ranking ----------------------------------------------------------------------------
    @abc.abstractmethod
    def _fetch_block(
        self, exhibition_id: str, version: str | None, cached: CachedBlock | None
    ) -> tuple[str, str, bytes | None]:
        """Resolve the version, check the block stamp, rebuild the block if stale.

        Returns (version name, stamp, packed bytes), with bytes None when `cached` (same
        version) still carries the current stamp. Must raise ExhibitionNotFound,
        VersionNotFound or NoActiveVersion.
        """

    @abc.abstractmethod
    def block_stamp(self, exhibition_id: str, job_ids: Sequence[str] = ()) -> tuple[str, str, list[dict | None]]:
        """(active version, the exhibition's block stamp in it, the job records `job_ids`) in one
        read: what a ranking answer cached under its stamp needs before anything else (the
        stamp as stamped_block would return it). Raises ExhibitionNotFound, NoActiveVersion."""

    def prepare_block(self, exhibition_id: str, version: str) -> str:
        """Make sure the store holds the exhibition's packed block for `version` at its current
        stamp (built now if not), without decoding it here; returns the stamp. Workers call it
        ahead of the first read (worker/precompute.py)."""
        return self._fetch_block(exhibition_id, version, None)[1]

    # -- ranking answers cache (shared by API processes) ------------------------------------------
    @abc.abstractmethod
    def put_answer(self, key: str, body: bytes, ttl_s: int) -> None:
        """Keep a rendered answer under `key` (an ETag: a pure function of what the answer depends
        on, so it is never invalidated, only left to expire after ttl_s)."""

    @abc.abstractmethod
    def get_answer(self, key: str) -> bytes | None:
        """The answer put under `key`, or None (never put, or expired)."""

    def async_reads(self) -> ThreadedReads:
        """block_stamp and get_answer for an event loop (indexer/async_reads.py): this store's
        own methods in a thread, unless the backend has a non-blocking client (Redis). The
        caller closes it (`await reads.aclose()`) on the loop that used it."""
        return ThreadedReads(self)

    @abc.abstractmethod
    def claim(self, key: str, ttl_s: int) -> bool:
        """True for the first caller to claim `key`, False for every other until ttl_s passed:
        of the API processes told about the same work, one does it (api/answer_warmer.py)."""

    # -- precompute notices (worker -> every API process) -------------------------------------------
    @abc.abstractmethod
    def announce_precomputed(self, version: str, exhibition_ids: Sequence[str]) -> None:
        """Tell every listener (on_precomputed) that these exhibitions' topic entries and blocks
        for `version` are in the store now. Best effort: a listener that is not there misses it."""

    @abc.abstractmethod
    def on_precomputed(self, listener: Callable[[str, list[str]], None]) -> Callable[[], None]:
        """Call listener(version, exhibition_ids) for each announcement from now on (Redis: in
        a thread of the subscription; embedded: in the announcer's); returns the function that
        stops it. The listener should be quick: hand the work to a thread of its own."""

    def scoring_block(self, exhibition_id: str, version: str | None = None) -> tuple[str, ScoringBlock]:
        """The exhibition's decoded block for `version` (default: the active one)."""
        name, _, block = self.stamped_block(exhibition_id, version)
        return name, block

    def stamped_block(self, exhibition_id: str, version: str | None = None) -> tuple[str, str, ScoringBlock]:
        """(version, stamp, block): the stamp changes whenever the block's products, their
        status, image, attrs or vectors, or the exhibition change (an ETag can be built on it)."""
        cached = self._blocks.get(exhibition_id, version) if version else self._latest(exhibition_id)
        name, stamp, data = self._fetch_block(exhibition_id, version, cached)
        if data is None and cached is not None and cached.version == name:
            return name, stamp, cached.block
        if data is None:  # cache entry vanished meanwhile: ask again without it
            name, stamp, data = self._fetch_block(exhibition_id, version, None)
            assert data is not None
        block = decode_block(data)
        item = CachedBlock(version=name, stamp=stamp, block=block)
        self._blocks.put(exhibition_id, item)
        self._last_version[exhibition_id] = name
        return name, stamp, block

    def _latest(self, exhibition_id: str) -> CachedBlock | None:
        # The active version is resolved by the store on every call (an atomic switch must be
        # seen at once); we only offer the block of the version we saw last as a candidate.
        name = self._last_version.get(exhibition_id)
        return self._blocks.get(exhibition_id, name) if name else None

    def rank(self, exhibition_id: str, query: object, k: int = 10, version: str | None = None) -> ExhibitionRanking:
        """Top k products of the exhibition by cosine to the group query."""
        if k < 1:
            raise InvalidInput("k must be >= 1")
        return self.rank_page(exhibition_id, query, offset=0, limit=k, version=version)

    def rank_page(
        self, exhibition_id: str, query: object, offset: int = 0, limit: int = 50, version: str | None = None
    ) -> ExhibitionRanking:
        """Ranks [offset, offset+limit) of the full ranking (for paging)."""
        name, block = self.scoring_block(exhibition_id, version)
        q = normalised_query(query, block.dim)
        scores = cosine_scores(block.matrix, q)
        idx = ranked_slice(scores, offset, limit)
        items = [
            RankedProduct(product_id=str(block.product_ids[i]), score=float(scores[i]), rank=offset + j + 1)
            for j, i in enumerate(idx)
        ]
        return ExhibitionRanking(
            exhibition_id=exhibition_id,
            model_version=name,
            items=items,
            total_scored=len(block.product_ids),
            pending=list(block.pending),
            failed=list(block.failed),
            unknown=list(block.unknown),
        )

    def clear_process_cache(self) -> None:
        """Forget decoded blocks held by this process (benchmarks use it to measure cold)."""
        self._blocks.clear()
