"""Redis backend: the production store shared by API replicas and workers.

Compound updates are Lua scripts (atomic); reads that touch many keys are pipelined or run
server-side. Vectors live in pre-sized slab strings (exactly dim*2 bytes each) found through
small listpack-encoded index buckets, which keeps memory near the raw fp16 size.

On a Redis Cluster (a ``redis+cluster://`` URL) every key the scripts touch carries the hash tag
``{<prefix>}`` (indexer/redis_client.py): the records, vectors and index share one slot, while
packed blocks (a cache the scripts no longer write there) and job records spread over the
masters by their own names. On one Redis the key names are what they always were.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import redis
from redis.cluster import RedisCluster

from indexer import redis_scripts as lua
from indexer.async_reads import ThreadedReads
from indexer.block_cache import CachedBlock
from indexer.config import RedisStoreConfig
from indexer.errors import (
    ExhibitionNotFound,
    InvalidVector,
    NoActiveVersion,
    ProductNotFound,
    StoreError,
    StoreUnavailable,
    VectorNotFound,
    VersionConflict,
    VersionInUse,
    VersionNotFound,
)
from indexer.pending import DEFAULT_LEASE_S
from indexer.redis_client import RedisClient, is_cluster, key_group, redis_client
from indexer.redis_pending import RedisPendingSet
from indexer.records import (
    CatalogueChanges,
    Coverage,
    Exhibition,
    ExhibitionPage,
    ModelVersion,
    Product,
    ProductStatus,
    VersionState,
)
from indexer.store import (
    DEFAULT_EXPECTED_VECTORS,
    JobChange,
    VectorStore,
    check_page,
    checked_writes,
    encode_attrs,
)
from indexer.vectors import check_id, finite_float32, hash_digest, normalised_fp16

log = logging.getLogger(__name__)

# Error codes raised by the Lua scripts -> exceptions.
_LUA_ERRORS: dict[str, type[StoreError]] = {
    "CLIK_NOVERSION": VersionNotFound,
    "CLIK_NOPRODUCT": ProductNotFound,
    "CLIK_NOEXHIBITION": ExhibitionNotFound,
    "CLIK_NOACTIVE": NoActiveVersion,
    "CLIK_CONFLICT": VersionConflict,
    "CLIK_INUSE": VersionInUse,
    "CLIK_BADVECTOR": InvalidVector,
}

# A slab string must fit one jemalloc size class exactly (1 MiB), else up to 25% is wasted.
_SLAB_BYTES = 1 << 20
_SDS_OVERHEAD = 16
# Index buckets are Redis hashes kept under hash-max-listpack-entries (default 128): a
# listpack entry costs ~25 bytes, a hashtable entry ~90. Aim at 64 entries per bucket.
_ENTRIES_PER_BUCKET = 64
_MAX_BUCKETS = 65536  # the bucket number is taken from two digest bytes


@contextlib.contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis unreachable: {exc}") from exc
    except redis.ResponseError as exc:
        message = str(exc)
        for code, cls in _LUA_ERRORS.items():
            if code in message:
                # drop Redis' " script: <sha>, on @user_script:<line>." suffix
                raise cls(message.split(code, 1)[1].split(" script: ")[0].strip()) from exc
        if "CLIK_STALE" in message:
            raise _StaleVersion(message) from exc
        raise StoreError(f"Redis error: {message}") from exc


_UPDATE_JOBS_ATTEMPTS = 100  # optimistic retries: some writer wins each round, so this is rarely reached
_JOBS_LOCK_MS = 5000


class _StaleVersion(StoreError):
    """The cached version id no longer matches the registry (dropped and re-registered)."""


class RedisStore(VectorStore):
    def __init__(self, config: RedisStoreConfig | None = None, client: RedisClient | None = None) -> None:
        self.config = config or RedisStoreConfig()
        super().__init__(self.config.cache_bytes)
        self.prefix = self.config.prefix
        self.r: RedisClient = client or redis_client(
            self.config.url,
            socket_timeout=self.config.socket_timeout_s,
            socket_connect_timeout=self.config.socket_timeout_s,
        )
        self.cluster = is_cluster(self.r)
        # every key a script touches starts with `core` (one hash slot on a cluster); packed
        # blocks and job records are read and written by plain commands, so on a cluster they
        # keep untagged names and spread over the masters
        self.core = key_group(self.prefix, "", self.cluster)
        self._route = [self.core + "reg"]  # KEYS[1] of every script: where a cluster runs it
        self._scripts = {
            name: self.r.register_script(getattr(lua, name))
            for name in (
                "REGISTER_VERSION",
                "SET_STATE",
                "DROP_VERSION",
                "PUT_PRODUCT",
                "MARK_ENCODED",
                "MARK_FAILED",
                "DELETE_PRODUCT",
                "PUT_EXHIBITION",
                "DELETE_EXHIBITION",
                "PUT_VECTORS",
                "GET_VECTORS",
                "HAS_VECTORS",
                "PUT_TOPIC",
                "GET_TOPIC",
                "CHECK_BLOCK",
                "BUILD_BLOCK",
                "ACTIVE_VERSION",
                "CATALOGUE_CHANGES",
                "RELEASE_LOCK",
            )
        }
        self._versions: dict[str, ModelVersion] = {}  # immutable parts (id, dim) by name
        if self.config.catalogue_log_cap is not None:  # a store-wide setting: the scripts read it
            with _translated_errors():
                self.r.set(self._k("cchg:cap"), int(self.config.catalogue_log_cap))

    def _run(self, script: str, *args: object) -> Any:  # each script returns its own shape
        with _translated_errors():
            return self._scripts[script](keys=self._route, args=[self.core, *args])

    def _run_many(self, calls: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
        """Script calls pipelined in one round trip (each stays atomic). redis-py's cluster
        pipeline refuses EVALSHA, but every script runs in the one slot of `core`, so on a
        cluster the calls go down a plain pipeline to that slot's master; if the slot has moved
        meanwhile (MOVED), the client's slot map is refreshed and the batch is sent again (the
        node refused every call of it)."""
        for attempt in (0, 1):
            if isinstance(self.r, RedisCluster):
                node = self.r.get_node_from_key(self._route[0])
                pipe = self.r.get_redis_connection(node).pipeline(transaction=False)
            else:
                pipe = self.r.pipeline(transaction=False)
            for script, args in calls:
                self._scripts[script](keys=self._route, args=[self.core, *args], client=pipe)
            try:
                with _translated_errors():
                    return pipe.execute()
            except StoreError as exc:
                if attempt or not isinstance(self.r, RedisCluster) or "MOVED" not in str(exc):
                    raise
                self.r.nodes_manager.initialize()
        raise AssertionError("unreachable")

    def _k(self, *parts: object) -> str:
        return self.core + ":".join(str(p) for p in parts)

    # read and written by plain commands only: untagged, so a cluster spreads them
    def _block_key(self, vid: object, exhibition_id: str) -> str:
        return self.prefix + f"b:{vid}:{exhibition_id}"

    def _job_key(self, job_id: str) -> str:
        return self.prefix + f"job:{job_id}"

    def async_reads(self) -> ThreadedReads:
        if self.cluster:  # records and scripts on several nodes: the blocking client's routing
            return ThreadedReads(self)
        from indexer.redis_async import RedisAsyncReads  # it imports this module

        return RedisAsyncReads(self)

    def close(self) -> None:
        self.r.close()

    def ping(self) -> None:
        with _translated_errors():
            self.r.ping()

    def pending_set(self, lease_s: float = DEFAULT_LEASE_S) -> RedisPendingSet:
        # On this store's client, under its prefix: the keys `<prefix>ingest:*` (one hash slot of
        # their own on a cluster, apart from the store's records: indexer.redis_client.key_group).
        return RedisPendingSet(self.r, self.prefix, lease_s=lease_s)

    # -- job records --------------------------------------------------------------------------
    def put_job(self, job_id: str, record: Mapping[str, object]) -> None:
        check_id(job_id, "job_id")
        with _translated_errors():
            self.r.set(self._job_key(job_id), json.dumps(dict(record), sort_keys=True))

    def get_job(self, job_id: str) -> dict | None:
        with _translated_errors():
            raw = self.r.get(self._job_key(job_id))
        return json.loads(raw) if raw else None

    def update_jobs(self, job_ids: Sequence[str], change: JobChange) -> None:
        for job_id in job_ids:
            check_id(job_id, "job_id")
        ids = list(dict.fromkeys(job_ids))
        with _translated_errors():
            if self.cluster:
                self._update_jobs_locked(ids, change)
            else:
                self._update_jobs_watched(ids, change)

    def _update_jobs_watched(self, ids: list[str], change: JobChange) -> None:
        """WATCH the records, read them, write in MULTI/EXEC: EXEC fails (WatchError) when any
        of them was written meanwhile, and the whole read-check-write starts again."""
        keys = [self._job_key(j) for j in ids]
        with self.r.pipeline(transaction=True) as pipe:
            for _ in range(_UPDATE_JOBS_ATTEMPTS):
                try:
                    pipe.watch(*keys)
                    raws = pipe.mget(keys)
                    writes = checked_writes(ids, change({j: json.loads(v) if v else None for j, v in zip(ids, raws)}))
                    pipe.multi()
                    for job_id, doc in writes.items():
                        pipe.set(self._job_key(job_id), doc)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue
        raise StoreUnavailable(f"update_jobs: records rewritten by others {_UPDATE_JOBS_ATTEMPTS} times in a row")

    def _update_jobs_locked(self, ids: list[str], change: JobChange) -> None:
        """On a cluster the records lie in several slots, where no WATCH or script reaches them
        all: writers of update_jobs take turns on a lock record instead (in `core`'s slot). It
        expires after _JOBS_LOCK_MS, so a writer killed while holding it stalls the others for
        that long at most; a read-check-write takes milliseconds."""
        lock, token = self.core + "jobs:lock", uuid.uuid4().hex
        deadline = time.monotonic() + 2 * _JOBS_LOCK_MS / 1000
        while not self.r.set(lock, token, nx=True, px=_JOBS_LOCK_MS):
            if time.monotonic() > deadline:
                raise StoreUnavailable("update_jobs: the records' lock is held by another writer")
            time.sleep(0.002)
        try:
            current = {j: (json.loads(raw) if (raw := self.r.get(self._job_key(j))) else None) for j in ids}
            for job_id, doc in checked_writes(ids, change(current)).items():
                self.r.set(self._job_key(job_id), doc)
        finally:
            self._scripts["RELEASE_LOCK"](keys=[lock], args=[token])

    # -- products -----------------------------------------------------------------------------
    def put_product(self, product_id: str, image_source: str, attrs: Mapping[str, object] | None = None) -> Product:
        check_id(product_id, "product_id")
        check_id(image_source, "image_source")
        self._run("PUT_PRODUCT", product_id, image_source, encode_attrs(attrs) or "")
        return self.get_product(product_id)

    def get_product(self, product_id: str) -> Product:
        with _translated_errors():
            src, st, h, err, a = self.r.hmget(self._k("p", product_id), "s", "st", "h", "e", "a")
        if st is None:
            raise ProductNotFound(f"unknown product {product_id!r}")
        return Product(
            product_id,
            src.decode(),
            ProductStatus(st.decode()),
            h.decode() if h else None,
            err.decode() if err else None,
            json.loads(a) if a else {},
        )

    def get_attrs(self, product_ids: Sequence[str]) -> dict[str, dict]:
        ids = list(dict.fromkeys(product_ids))
        out: dict[str, dict] = {}
        with _translated_errors():
            for start in range(0, len(ids), 5000):
                part = ids[start : start + 5000]
                pipe = self.r.pipeline(transaction=False)
                for pid in part:
                    pipe.hget(self._k("p", pid), "a")
                for pid, raw in zip(part, pipe.execute()):
                    if raw:
                        attrs = json.loads(raw)
                        if attrs:
                            out[pid] = attrs
        return out

    def mark_encoded(self, product_id: str, image_hash: str) -> Product:
        check_id(image_hash, "image_hash")
        self._run("MARK_ENCODED", product_id, image_hash, hash_digest(image_hash))
        return self.get_product(product_id)

    def import_products(self, items: Sequence[tuple[str, str, str | None]], batch: int = 2000) -> None:
        # pipelined script calls: each product's update stays atomic, round trips are batched
        for start in range(0, len(items), batch):
            calls: list[tuple[str, Sequence[object]]] = []
            for product_id, image_source, image_hash in items[start : start + batch]:
                check_id(product_id, "product_id")
                check_id(image_source, "image_source")
                calls.append(("PUT_PRODUCT", (product_id, image_source, "")))
                if image_hash is not None:
                    check_id(image_hash, "image_hash")
                    calls.append(("MARK_ENCODED", (product_id, image_hash, hash_digest(image_hash))))
            self._run_many(calls)

    def mark_failed(self, product_id: str, reason: str) -> Product:
        self._run("MARK_FAILED", product_id, str(reason))
        return self.get_product(product_id)

    def delete_product(self, product_id: str) -> None:
        self._run("DELETE_PRODUCT", product_id)

    # -- exhibitions ----------------------------------------------------------------------------
    def put_exhibition(self, exhibition_id: str, topic: Mapping[str, str], product_ids: Sequence[str]) -> Exhibition:
        check_id(exhibition_id, "exhibition_id")
        ids = list(dict.fromkeys(check_id(p, "product_id") for p in product_ids))
        now = time.time()
        self._run("PUT_EXHIBITION", exhibition_id, json.dumps(dict(topic), sort_keys=True), "\n".join(ids), repr(now))
        return Exhibition(exhibition_id, dict(topic), tuple(ids), now)

    def get_exhibition(self, exhibition_id: str) -> Exhibition:
        with _translated_errors():
            t, ids, u = self.r.hmget(self._k("e", exhibition_id), "t", "ids", "u")
        if t is None:
            raise ExhibitionNotFound(f"unknown exhibition {exhibition_id!r}")
        return Exhibition(exhibition_id, json.loads(t), tuple(ids.decode().split("\n")) if ids else (), float(u))

    def delete_exhibition(self, exhibition_id: str) -> None:
        vids = self._run("DELETE_EXHIBITION", exhibition_id)
        # the blocks are a cache outside the script's slot; a block built just before the delete
        # and written after it is never served: a re-created exhibition gets a new stamp (`c`)
        if vids:
            with _translated_errors():
                self.r.unlink(*[self._block_key(v.decode(), exhibition_id) for v in vids])

    def get_exhibition_topic(self, exhibition_id: str) -> dict[str, str]:
        with _translated_errors():
            t = self.r.hget(self._k("e", exhibition_id), "t")
        if t is None:
            raise ExhibitionNotFound(f"unknown exhibition {exhibition_id!r}")
        return json.loads(t)

    def list_exhibitions(self, offset: int = 0, limit: int = 50) -> ExhibitionPage:
        check_page(offset, limit)
        # ex: a sorted set with every score 0, so ZRANGE orders it by id (lexicographically)
        with _translated_errors():
            pipe = self.r.pipeline(transaction=False)
            pipe.zcard(self._k("ex"))
            pipe.zrange(self._k("ex"), offset, offset + limit - 1)
            total, ids = pipe.execute()
            pipe = self.r.pipeline(transaction=False)
            for eid in ids:
                pipe.hmget(self._k("e", eid.decode()), "t", "ids", "u")
            rows = pipe.execute()
        items = [
            Exhibition(eid.decode(), json.loads(t), tuple(pids.decode().split("\n")) if pids else (), float(u))
            for eid, (t, pids, u) in zip(ids, rows)
            if t is not None  # deleted in between
        ]
        return ExhibitionPage(total=int(total), items=items)

    # -- versions -------------------------------------------------------------------------------
    def _parse_version(self, name: str, raw: bytes | str, active: str | None) -> ModelVersion:
        d = json.loads(raw)
        return ModelVersion(
            name=name,
            id=int(d["id"]),
            dim=int(d["dim"]),
            bundle_uri=d["bundle"],
            state=VersionState(d["state"]),
            created_at=float(d["created_at"]),
            active=name == active,
        )

    def _layout(self, name: str) -> dict:
        with _translated_errors():
            raw = self.r.hget(self._k("reg"), name)
        if raw is None:
            raise VersionNotFound(f"unknown model version {name!r}")
        return json.loads(raw)

    def register_version(
        self, name: str, dim: int, bundle_uri: str = "", expected_vectors: int = DEFAULT_EXPECTED_VECTORS
    ) -> ModelVersion:
        check_id(name, "model version")
        if not isinstance(dim, int) or dim < 1:
            raise VersionConflict(f"dim must be a positive int, got {dim!r}")
        buckets = 1 << max(4, math.ceil(math.log2(max(1, expected_vectors) / _ENTRIES_PER_BUCKET)))
        slab = max(1, (_SLAB_BYTES - _SDS_OVERHEAD) // (dim * 2))
        self._run("REGISTER_VERSION", name, dim, min(buckets, _MAX_BUCKETS), slab, bundle_uri, repr(time.time()))
        return self.get_version(name)

    def get_version(self, name: str) -> ModelVersion:
        with _translated_errors():
            raw, active = self.r.hget(self._k("reg"), name), self.r.get(self._k("reg:active"))
        if raw is None:
            raise VersionNotFound(f"unknown model version {name!r}")
        return self._parse_version(name, raw, active.decode() if active else None)

    def list_versions(self) -> list[ModelVersion]:
        with _translated_errors():
            raw, active = self.r.hgetall(self._k("reg")), self.r.get(self._k("reg:active"))
        act = active.decode() if active else None
        versions = [self._parse_version(n.decode(), j, act) for n, j in raw.items()]
        return sorted(versions, key=lambda v: v.id)

    def active_version(self) -> ModelVersion | None:
        found = self._run("ACTIVE_VERSION")
        if not found or found[1] is None:
            return None
        name = found[0].decode()
        return self._parse_version(name, found[1], name)

    def set_version_state(self, name: str, state: VersionState) -> ModelVersion:
        self._run("SET_STATE", name, VersionState(state).value, "0")
        return self.get_version(name)

    def activate(self, name: str) -> ModelVersion:
        # one script: state and active pointer change together, rankings see old or new
        self._run("SET_STATE", name, VersionState.READY.value, "1")
        return self.get_version(name)

    def drop_version(self, name: str) -> None:
        raw, used = self._run("DROP_VERSION", name)
        self._versions.pop(name, None)
        d = json.loads(raw)
        vid, slabs = d["id"], math.ceil(int(used) / int(d["slab"]))
        keys = [self._k("vi", vid, b) for b in range(int(d["nb"]))]
        keys += [self._k("vs", vid, s) for s in range(slabs)]
        keys += [self._k("vn", vid), self._k("vg", vid), self._k("t", vid)]
        with _translated_errors():
            keys += list(self.r.scan_iter(match=self._block_key(vid, "*"), count=1000))
            for i in range(0, len(keys), 1000):
                self.r.unlink(*keys[i : i + 1000])

    # -- vectors --------------------------------------------------------------------------------
    def _cached_version(self, name: str, refresh: bool = False) -> ModelVersion:
        if refresh or name not in self._versions:
            self._versions[name] = self.get_version(name)
        return self._versions[name]

    def put_vector(self, version: str, image_hash: str, vector: object) -> None:
        self.put_vectors(version, [(image_hash, vector)])

    def put_vectors(self, version: str, items: Sequence[tuple[str, object]]) -> None:
        """Bulk put: one atomic script per call (re-index batches, benchmarks)."""
        for attempt in (0, 1):
            v = self._cached_version(version, refresh=attempt == 1)
            args: list[object] = [version, str(v.id)]
            for h, vec in items:
                check_id(h, "image_hash")
                args += [h, hash_digest(h), normalised_fp16(vec, v.dim).tobytes()]
            try:
                self._run("PUT_VECTORS", *args)
                return
            except _StaleVersion:
                if attempt:
                    raise

    def get_vector(self, version: str, image_hash: str) -> np.ndarray:
        (vec,) = self._run("GET_VECTORS", version, hash_digest(image_hash))
        if not vec:
            raise VectorNotFound(f"no vector for image {image_hash!r} in version {version!r}")
        return np.frombuffer(vec, dtype="<f2").copy()

    def has_vector(self, version: str, image_hash: str) -> bool:
        (vec,) = self._run("GET_VECTORS", version, hash_digest(image_hash))
        return bool(vec)

    def _scan_products(self, batch: int = 1000) -> Iterator[tuple[int, int, list[tuple[str, str, str, bytes]]]]:
        """Batches of (products seen, failed among them, rows of (product_id, image_hash,
        image_source, digest) of the encoded ones)."""
        plen = len(self._k("p", ""))
        with _translated_errors():
            keys: list[bytes] = []
            for key in self.r.scan_iter(match=self._k("p", "*"), count=batch):
                keys.append(key)
                if len(keys) >= batch:
                    yield len(keys), *self._product_rows(keys, plen)
                    keys = []
            if keys:
                yield len(keys), *self._product_rows(keys, plen)

    def _scan_encoded(self, batch: int = 1000) -> Iterator[list[tuple[str, str, str, bytes]]]:
        """Batches of (product_id, image_hash, image_source, digest) of encoded products."""
        for _, _, rows in self._scan_products(batch):
            yield rows

    def _product_rows(self, keys: list[bytes], plen: int) -> tuple[int, list[tuple[str, str, str, bytes]]]:
        pipe = self.r.pipeline(transaction=False)
        for k in keys:
            pipe.hmget(k, "st", "h", "s", "d")
        rows, failed = [], 0
        for k, (st, h, s, d) in zip(keys, pipe.execute()):
            if st == b"encoded" and h and d:
                rows.append((k[plen:].decode(), h.decode(), s.decode(), d))
            failed += st == b"failed"
        return failed, rows

    def coverage(self, versions: Sequence[str]) -> Coverage:
        with _translated_errors():
            pipe = self.r.pipeline(transaction=False)
            pipe.hgetall(self._k("cnt"))
            pipe.hgetall(self._k("vc"))
            pipe.hgetall(self._k("reg"))
            cnt, vc, reg = pipe.execute()
        if cnt.get(b"v") != b"1":
            return self._scan_coverage(versions)  # a store from before the counters
        ids = {name.decode(): json.loads(raw)["id"] for name, raw in reg.items()}
        covered = {name: int(vc.get(str(ids[name]).encode(), 0)) if name in ids else 0 for name in versions}
        return Coverage(
            products=int(cnt.get(b"products", 0)),
            encoded=int(cnt.get(b"encoded", 0)),
            covered=covered,
            failed=int(cnt.get(b"failed", 0)),
        )

    def _scan_coverage(self, versions: Sequence[str]) -> Coverage:
        """Coverage counted over every product record (stores written before the counters)."""
        products = encoded = failed = 0
        covered = dict.fromkeys(versions, 0)
        for seen, bad, rows in self._scan_products(batch=5000):
            products += seen
            failed += bad
            encoded += len(rows)
            if not rows:
                continue
            digests = [r[3] for r in rows]
            found = self._run_many([("HAS_VECTORS", (name, *digests)) for name in covered])
            for name, flags in zip(covered, found):
                covered[name] += sum(flags)
        return Coverage(products=products, encoded=encoded, covered=covered, failed=failed)

    def missing_vectors(self, version: str, limit: int = 1000) -> list[tuple[str, str]]:
        self.get_version(version)
        out: dict[str, str] = {}
        for rows in self._scan_encoded():
            rows = [r for r in rows if r[1] not in out]
            if not rows:
                continue
            found = self._run("HAS_VECTORS", version, *[r[3] for r in rows])
            for (_, h, s, _), has in zip(rows, found):
                if not has:
                    out.setdefault(h, s)
                    if len(out) >= limit:
                        return list(out.items())
        return list(out.items())

    def iter_product_vectors(self, version: str, batch_size: int = 10_000) -> Iterator[tuple[list[str], np.ndarray]]:
        v = self.get_version(version)
        for rows in self._scan_encoded(batch=batch_size):
            found = self._run("GET_VECTORS", version, *[r[3] for r in rows]) if rows else []
            pairs = [(r[0], vec) for r, vec in zip(rows, found) if vec]
            if pairs:
                mat = np.frombuffer(b"".join(p[1] for p in pairs), dtype="<f2").reshape(len(pairs), v.dim)
                yield [p[0] for p in pairs], mat

    def catalogue_generation(self) -> int:
        with _translated_errors():
            return int(self.r.get(self._k("cgen")) or 0)

    def catalogue_changes(self, since: int) -> CatalogueChanges | None:
        raw = self._run("CATALOGUE_CHANGES", int(since))
        generation, floor = int(raw[0]), int(raw[1])
        if since < floor or since > generation:  # trimmed away, or another store's generation
            return None
        return CatalogueChanges(generation, tuple(p.decode() for p in raw[2:]))

    def product_vectors(self, version: str, product_ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        v = self.get_version(version)
        ids = list(dict.fromkeys(product_ids))
        plen = len(self._k("p", ""))
        with _translated_errors():
            _, rows = self._product_rows([self._k("p", pid).encode() for pid in ids], plen)
        found = self._run("GET_VECTORS", version, *[r[3] for r in rows]) if rows else []
        pairs = [(r[0], vec) for r, vec in zip(rows, found) if vec]
        mat = np.frombuffer(b"".join(p[1] for p in pairs), dtype="<f2").reshape(len(pairs), v.dim)
        return [p[0] for p in pairs], mat

    # -- topic cache ----------------------------------------------------------------------------
    def put_topic_embedding(self, version: str, topic_key: str, vector: object) -> None:
        check_id(topic_key, "topic_key")
        self._run("PUT_TOPIC", version, topic_key, finite_float32(vector).tobytes())

    def get_topic_embedding(self, version: str, topic_key: str) -> np.ndarray | None:
        raw = self._run("GET_TOPIC", version, topic_key)
        return None if raw is None else np.frombuffer(raw, dtype=np.float32).copy()

    # -- ranking --------------------------------------------------------------------------------
    def block_stamp(self, exhibition_id: str, job_ids: Sequence[str] = ()) -> tuple[str, str, list[dict | None]]:
        # One pipelined round trip on one Redis: the stamp check and the records (an exhibition's
        # overrides). EVALSHA by hand: a Script object in a pipeline makes redis-py send SCRIPT
        # EXISTS first, a second round trip on every call (seen in a profile of the warm path).
        # On a cluster the script goes to its slot's master (redis-py's cluster pipeline refuses
        # EVALSHA) and the job records, untagged, are read where they live: a second round trip.
        script = self._scripts["CHECK_BLOCK"]
        cluster = isinstance(self.r, RedisCluster)
        client = self.r.get_redis_connection(self.r.get_node_from_key(self._route[0])) if cluster else self.r
        with _translated_errors():
            for attempt in (0, 1):
                pipe = client.pipeline(transaction=False)
                pipe.evalsha(script.sha, len(self._route), *self._route, self.core, exhibition_id, "")
                if not cluster:
                    for job_id in job_ids:
                        pipe.get(self._job_key(job_id))
                try:
                    found = pipe.execute()
                    break
                except redis.exceptions.NoScriptError:  # a restarted or flushed server
                    if attempt:
                        raise
                    client.script_load(script.script)
            records = found[1:] if not cluster else [self.r.get(self._job_key(j)) for j in job_ids]
        name, _, stamp = (x.decode() for x in found[0])
        return name, stamp, [json.loads(raw) if raw else None for raw in records]

    def prepare_block(self, exhibition_id: str, version: str) -> str:
        # the read path's own fetch: on a cluster the block is built by the script and stored
        # here, in its own slot (reading the bytes back once is the price of one code path)
        return self._fetch_block(exhibition_id, version, None)[1]

    # Answers: plain string keys "<prefix>ans:<etag>" with a TTL, outside every Lua script.
    def put_answer(self, key: str, body: bytes, ttl_s: int) -> None:
        with _translated_errors():
            self.r.set(self._k("ans", key), body, ex=max(1, int(ttl_s)))

    def get_answer(self, key: str) -> bytes | None:
        with _translated_errors():
            raw = self.r.get(self._k("ans", key))
        return raw if isinstance(raw, bytes) or raw is None else str(raw).encode()

    def exhibitions_of(self, product_ids: Sequence[str]) -> list[str]:
        found: set[str] = set()
        ids = list(dict.fromkeys(product_ids))
        with _translated_errors():
            for start in range(0, len(ids), 1000):  # the reverse sets pe:{pid} share the store's slot
                found.update(e.decode() for e in self.r.sunion([self._k("pe", p) for p in ids[start : start + 1000]]))
        return sorted(found)

    def claim(self, key: str, ttl_s: int) -> bool:
        with _translated_errors():
            return bool(self.r.set(self._k("claim", key), b"1", nx=True, ex=max(1, int(ttl_s))))

    # Precompute notices: Redis pub/sub on one channel of the prefix; a message is JSON
    # {"version", "exhibitions"}. Pub/sub, not a stream: a notice only matters to the API
    # processes running now (a process started later computes on its first read, as before).
    def announce_precomputed(self, version: str, exhibition_ids: Sequence[str]) -> None:
        if exhibition_ids:
            with _translated_errors():
                self.r.publish(
                    self.prefix + "precomputed", json.dumps({"version": version, "exhibitions": list(exhibition_ids)})
                )

    def on_precomputed(self, listener: Callable[[str, list[str]], None]) -> Callable[[], None]:
        def handle(message: dict) -> None:
            try:
                notice = json.loads(message["data"])
                version, ids = notice["version"], notice["exhibitions"]
            except (ValueError, KeyError, TypeError):
                log.warning("malformed precompute notice ignored: %.200r", message.get("data"))
                return
            listener(str(version), [str(e) for e in ids])

        def on_error(exc: BaseException, pubsub: Any, thread: Any) -> None:
            # redis-py subscribes again when it reconnects; notices sent meanwhile are lost
            log.warning("precompute notices: %s (retrying)", exc)
            time.sleep(1.0)

        with _translated_errors():
            pubsub = self.r.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(**{self.prefix + "precomputed": handle})
            thread = pubsub.run_in_thread(sleep_time=1.0, daemon=True, exception_handler=on_error)

        def stop() -> None:
            thread.stop()
            thread.join(5)
            pubsub.close()

        return stop

    def _fetch_block(
        self, exhibition_id: str, version: str | None, cached: CachedBlock | None
    ) -> tuple[str, str, bytes | None]:
        name, vid, stamp = (x.decode() for x in self._run("CHECK_BLOCK", exhibition_id, version or ""))
        if cached is not None and cached.version == name and cached.stamp == stamp:
            return name, stamp, None  # warm: one small round trip
        bk = self._block_key(vid, exhibition_id)
        with _translated_errors():
            pipe = self.r.pipeline(transaction=False)
            pipe.hmget(bk, "s", "d")
            pipe.expire(bk, self.config.block_ttl_s)
            (stored_stamp, data), _ = pipe.execute()
        # the block carries its own stamp: a block replaced meanwhile is detected, not mixed
        if stored_stamp is not None and stored_stamp.decode() == stamp:
            return name, stamp, data
        # one Redis: the script stores the block as it builds it; a cluster keeps blocks in other
        # slots, so the block comes back and is stored here (its stamp still guards it)
        name_b, stamp_b, data = self._run(
            "BUILD_BLOCK", exhibition_id, name, self.config.block_ttl_s, "0" if self.cluster else "1"
        )
        if self.cluster:
            with _translated_errors():
                pipe = self.r.pipeline(transaction=False)
                pipe.hset(bk, mapping={"s": stamp_b, "d": data})
                pipe.expire(bk, self.config.block_ttl_s)
                pipe.execute()
        return name_b.decode(), stamp_b.decode(), data
