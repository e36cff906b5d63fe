"""Embedded backend: one process, no server, sqlite3 on local disk.

Every write is one sqlite transaction (BEGIN IMMEDIATE ... COMMIT), so an interrupted update
leaves the previous state readable. Packed blocks are persisted too, so a restarted process
reads one blob instead of joining every product again.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from indexer.block_cache import CachedBlock
from indexer.config import EmbeddedStoreConfig
from indexer.errors import (
    ExhibitionNotFound,
    NoActiveVersion,
    ProductNotFound,
    StoreUnavailable,
    VectorNotFound,
    VersionConflict,
    VersionInUse,
    VersionNotFound,
)
from indexer.packed_block import encode_block
from indexer.pending import DEFAULT_LEASE_S
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
from indexer.vectors import check_id, finite_float32, normalised_fp16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions(
    name TEXT PRIMARY KEY, id INTEGER UNIQUE NOT NULL, dim INTEGER NOT NULL,
    bundle TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS products(
    pid TEXT PRIMARY KEY, src TEXT NOT NULL, hash TEXT, status TEXT NOT NULL, error TEXT);
CREATE INDEX IF NOT EXISTS products_hash ON products(hash);
CREATE TABLE IF NOT EXISTS product_attrs(pid TEXT PRIMARY KEY, attrs TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS exhibitions(
    eid TEXT PRIMARY KEY, topic TEXT NOT NULL, updated_at REAL NOT NULL, gen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS members(
    eid TEXT NOT NULL, pos INTEGER NOT NULL, pid TEXT NOT NULL, PRIMARY KEY(eid, pos)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_pid ON members(pid);
CREATE TABLE IF NOT EXISTS vgen(
    vid INTEGER NOT NULL, eid TEXT NOT NULL, gen INTEGER NOT NULL, PRIMARY KEY(vid, eid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vectors(
    vid INTEGER NOT NULL, hash TEXT NOT NULL, vec BLOB NOT NULL, PRIMARY KEY(vid, hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks(
    vid INTEGER NOT NULL, eid TEXT NOT NULL, stamp TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY(vid, eid));
CREATE TABLE IF NOT EXISTS catalogue_log(pid TEXT PRIMARY KEY, gen INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS catalogue_log_gen ON catalogue_log(gen);
CREATE TABLE IF NOT EXISTS topics(
    vid INTEGER NOT NULL, key TEXT NOT NULL, vec BLOB NOT NULL, PRIMARY KEY(vid, key)) WITHOUT ROWID;
"""

_ANSWER_BYTES = 32 * 1024 * 1024  # rendered ranking answers kept (a few KB each)

# Exhibitions whose block for a version depends on an image hash (via its products).
_EXHIBITIONS_OF_HASH = "SELECT DISTINCT m.eid FROM members m JOIN products p ON p.pid = m.pid WHERE p.hash = ?"


class EmbeddedStore(VectorStore):
    def __init__(self, config: EmbeddedStoreConfig | None = None) -> None:
        self.config = config or EmbeddedStoreConfig()
        super().__init__(self.config.cache_bytes)
        self._lock = threading.RLock()
        self._answers: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._answer_bytes = 0
        self._answers_lock = threading.Lock()
        self._claims: dict[str, float] = {}  # key -> until (monotonic)
        self._listeners: list[Callable[[str, list[str]], None]] = []
        try:
            self.config.path.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.config.path / "store.sqlite3",
                timeout=self.config.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint, never corrupt
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open embedded store at {self.config.path}: {exc}") from exc

    # -- plumbing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all or nothing."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"embedded store not writable: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._db.execute("ROLLBACK")
                    raise StoreUnavailable(f"embedded store commit failed: {exc}") from exc

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """Serialise access to the one connection; a closed or unreadable file is 'unavailable'."""
        with self._lock:
            try:
                yield self._db
            except (sqlite3.ProgrammingError, sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
                raise StoreUnavailable(f"embedded store unreadable: {exc}") from exc

    def close(self) -> None:
        with self._reading():
            self._db.close()

    def pending_set(self, lease_s: float = DEFAULT_LEASE_S) -> None:
        # None on purpose: one process on one machine encodes each event as it arrives (inline in
        # the task, or the single-machine stack's in-process queue); see indexer/pending.py.
        return None

    # -- job records --------------------------------------------------------------------------
    def put_job(self, job_id: str, record: Mapping[str, object]) -> None:
        check_id(job_id, "job_id")
        doc = json.dumps(dict(record), sort_keys=True)
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(k, v) VALUES (?, ?)", ("job:" + job_id, doc))

    def get_job(self, job_id: str) -> dict | None:
        with self._reading():
            row = self._db.execute("SELECT v FROM meta WHERE k = ?", ("job:" + job_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def update_jobs(self, job_ids: Sequence[str], change: JobChange) -> None:
        for job_id in job_ids:
            check_id(job_id, "job_id")
        ids = list(dict.fromkeys(job_ids))
        # BEGIN IMMEDIATE takes the file's write lock before the reads: another process's
        # transaction waits, so what `change` checked still holds when it commits
        with self._tx() as db:
            current = {}
            for job_id in ids:
                row = db.execute("SELECT v FROM meta WHERE k = ?", ("job:" + job_id,)).fetchone()
                current[job_id] = json.loads(row[0]) if row else None
            for job_id, doc in checked_writes(ids, change(current)).items():
                db.execute("INSERT OR REPLACE INTO meta(k, v) VALUES (?, ?)", ("job:" + job_id, doc))

    @staticmethod
    def _bump_catalogue(db: sqlite3.Connection, product_ids: Iterable[str]) -> None:
        """A new catalogue generation, in which these products changed (the change log an
        incremental catalogue index reads: one row per product, its last change)."""
        db.execute(
            "INSERT INTO meta(k, v) VALUES ('cgen', '1') ON CONFLICT(k) DO UPDATE SET v = CAST(v AS INTEGER) + 1"
        )
        gen = int(db.execute("SELECT v FROM meta WHERE k = 'cgen'").fetchone()[0])
        db.executemany(
            "INSERT INTO catalogue_log(pid, gen) VALUES (?, ?) ON CONFLICT(pid) DO UPDATE SET gen = excluded.gen",
            [(p, gen) for p in product_ids],
        )

    def catalogue_generation(self) -> int:
        with self._reading() as db:
            row = db.execute("SELECT v FROM meta WHERE k = 'cgen'").fetchone()
        return int(row[0]) if row else 0

    def catalogue_changes(self, since: int) -> CatalogueChanges | None:
        with self._reading() as db:
            row = db.execute("SELECT v FROM meta WHERE k = 'cgen'").fetchone()
            generation = int(row[0]) if row else 0
            if since > generation:  # another store's generation
                return None
            ids = [r[0] for r in db.execute("SELECT pid FROM catalogue_log WHERE gen > ? ORDER BY gen", (since,))]
        return CatalogueChanges(generation, tuple(ids))

    @staticmethod
    def _products_of_hashes(db: sqlite3.Connection, hashes: Sequence[str]) -> list[str]:
        out: list[str] = []
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            out += [
                r[0]
                for r in db.execute(f"SELECT pid FROM products WHERE hash IN ({','.join('?' * len(chunk))})", chunk)
            ]
        return out

    def product_vectors(self, version: str, product_ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        ids = list(dict.fromkeys(product_ids))
        rows: list[tuple[str, bytes]] = []
        with self._reading() as db:
            v = self._version(db, version)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows += db.execute(
                    "SELECT p.pid, x.vec FROM products p JOIN vectors x ON x.vid = ? AND x.hash = p.hash "
                    f"WHERE p.status = 'encoded' AND p.pid IN ({','.join('?' * len(chunk))})",
                    [v.id, *chunk],
                ).fetchall()
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f2").reshape(len(rows), v.dim)
        return [r[0] for r in rows], mat

    @classmethod
    def _bump_exhibitions_of_product(cls, db: sqlite3.Connection, pid: str) -> None:
        cls._bump_catalogue(db, [pid])
        db.execute("UPDATE exhibitions SET gen = gen + 1 WHERE eid IN (SELECT eid FROM members WHERE pid = ?)", (pid,))

    # -- products -----------------------------------------------------------------------------
    def _product(self, db: sqlite3.Connection, pid: str) -> Product:
        row = db.execute("SELECT src, hash, status, error FROM products WHERE pid = ?", (pid,)).fetchone()
        if row is None:
            raise ProductNotFound(f"unknown product {pid!r}")
        attrs = db.execute("SELECT attrs FROM product_attrs WHERE pid = ?", (pid,)).fetchone()
        return Product(pid, row[0], ProductStatus(row[2]), row[1], row[3], json.loads(attrs[0]) if attrs else {})

    def put_product(self, product_id: str, image_source: str, attrs: Mapping[str, object] | None = None) -> Product:
        check_id(product_id, "product_id")
        check_id(image_source, "image_source")
        attrs_json = encode_attrs(attrs)
        with self._tx() as db:
            if attrs_json is not None:
                old = db.execute("SELECT attrs FROM product_attrs WHERE pid = ?", (product_id,)).fetchone()
                db.execute("INSERT OR REPLACE INTO product_attrs(pid, attrs) VALUES (?, ?)", (product_id, attrs_json))
                if (old[0] if old else None) != attrs_json:  # business rules read them: blocks are stale
                    db.execute(
                        "UPDATE exhibitions SET gen = gen + 1 WHERE eid IN (SELECT eid FROM members WHERE pid = ?)",
                        (product_id,),
                    )
            row = db.execute("SELECT src FROM products WHERE pid = ?", (product_id,)).fetchone()
            if row is None or row[0] != image_source:
                db.execute(
                    "INSERT OR REPLACE INTO products(pid, src, hash, status, error) "
                    "VALUES (?, ?, NULL, 'pending', NULL)",
                    (product_id, image_source),
                )
                self._bump_exhibitions_of_product(db, product_id)
            return self._product(db, product_id)

    def get_product(self, product_id: str) -> Product:
        with self._reading():
            return self._product(self._db, product_id)

    def mark_encoded(self, product_id: str, image_hash: str) -> Product:
        check_id(image_hash, "image_hash")
        with self._tx() as db:
            self._product(db, product_id)
            db.execute(
                "UPDATE products SET hash = ?, status = 'encoded', error = NULL WHERE pid = ?", (image_hash, product_id)
            )
            self._bump_exhibitions_of_product(db, product_id)
            return self._product(db, product_id)

    def import_products(self, items: Sequence[tuple[str, str, str | None]]) -> None:
        rows = [
            (check_id(p, "product_id"), check_id(s, "image_source"), None if h is None else check_id(h, "image_hash"))
            for p, s, h in items
        ]
        with self._tx() as db:
            for pid, src, h in rows:
                row = db.execute("SELECT src, hash, status FROM products WHERE pid = ?", (pid,)).fetchone()
                status = "pending" if h is None else "encoded"
                if row is not None and row[0] == src and (h is None or (row[1] == h and row[2] == status)):
                    continue
                db.execute(
                    "INSERT OR REPLACE INTO products(pid, src, hash, status, error) VALUES (?, ?, ?, ?, NULL)",
                    (pid, src, h, status),
                )
                self._bump_exhibitions_of_product(db, pid)

    def mark_failed(self, product_id: str, reason: str) -> Product:
        with self._tx() as db:
            self._product(db, product_id)
            db.execute("UPDATE products SET status = 'failed', error = ? WHERE pid = ?", (str(reason), product_id))
            self._bump_exhibitions_of_product(db, product_id)
            return self._product(db, product_id)

    def get_attrs(self, product_ids: Sequence[str]) -> dict[str, dict]:
        ids = list(dict.fromkeys(product_ids))
        out: dict[str, dict] = {}
        with self._reading() as db:
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                rows = db.execute(
                    f"SELECT pid, attrs FROM product_attrs WHERE pid IN ({','.join('?' * len(part))})", part
                ).fetchall()
                out.update((pid, json.loads(a)) for pid, a in rows)
        return {pid: a for pid, a in out.items() if a}

    def delete_product(self, product_id: str) -> None:
        with self._tx() as db:
            self._product(db, product_id)
            db.execute("DELETE FROM products WHERE pid = ?", (product_id,))
            db.execute("DELETE FROM product_attrs WHERE pid = ?", (product_id,))
            self._bump_exhibitions_of_product(db, product_id)

    # -- exhibitions ----------------------------------------------------------------------------
    def put_exhibition(self, exhibition_id: str, topic: Mapping[str, str], product_ids: Sequence[str]) -> Exhibition:
        check_id(exhibition_id, "exhibition_id")
        ids = list(dict.fromkeys(check_id(p, "product_id") for p in product_ids))
        topic_json = json.dumps(dict(topic), sort_keys=True)
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO exhibitions(eid, topic, updated_at, gen) VALUES (?, ?, ?, 1) "
                "ON CONFLICT(eid) DO UPDATE SET topic = excluded.topic, "
                "updated_at = excluded.updated_at, gen = gen + 1",
                (exhibition_id, topic_json, now),
            )
            db.execute("DELETE FROM members WHERE eid = ?", (exhibition_id,))
            db.executemany(
                "INSERT INTO members(eid, pos, pid) VALUES (?, ?, ?)",
                ((exhibition_id, i, p) for i, p in enumerate(ids)),
            )
        return Exhibition(exhibition_id, dict(topic), tuple(ids), now)

    def get_exhibition(self, exhibition_id: str) -> Exhibition:
        with self._reading():
            row = self._db.execute(
                "SELECT topic, updated_at FROM exhibitions WHERE eid = ?", (exhibition_id,)
            ).fetchone()
            if row is None:
                raise ExhibitionNotFound(f"unknown exhibition {exhibition_id!r}")
            ids = [
                r[0] for r in self._db.execute("SELECT pid FROM members WHERE eid = ? ORDER BY pos", (exhibition_id,))
            ]
        return Exhibition(exhibition_id, json.loads(row[0]), tuple(ids), row[1])

    def delete_exhibition(self, exhibition_id: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM exhibitions WHERE eid = ?", (exhibition_id,)).rowcount == 0:
                raise ExhibitionNotFound(f"unknown exhibition {exhibition_id!r}")
            for table in ("members", "vgen", "blocks"):
                db.execute(f"DELETE FROM {table} WHERE eid = ?", (exhibition_id,))

    def list_exhibitions(self, offset: int = 0, limit: int = 50) -> ExhibitionPage:
        check_page(offset, limit)
        with self._reading() as db:
            total = db.execute("SELECT COUNT(*) FROM exhibitions").fetchone()[0]
            rows = db.execute(
                "SELECT eid, topic, updated_at FROM exhibitions ORDER BY eid LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
            items = [
                Exhibition(
                    eid,
                    json.loads(topic),
                    tuple(r[0] for r in db.execute("SELECT pid FROM members WHERE eid = ? ORDER BY pos", (eid,))),
                    updated_at,
                )
                for eid, topic, updated_at in rows
            ]
        return ExhibitionPage(total=total, items=items)

    # -- versions -------------------------------------------------------------------------------
    def _active_name(self, db: sqlite3.Connection) -> str | None:
        row = db.execute("SELECT v FROM meta WHERE k = 'active'").fetchone()
        return row[0] if row else None

    def _version(self, db: sqlite3.Connection, name: str) -> ModelVersion:
        row = db.execute("SELECT id, dim, bundle, state, created_at FROM versions WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise VersionNotFound(f"unknown model version {name!r}")
        return ModelVersion(
            name, row[0], row[1], row[2], VersionState(row[3]), row[4], active=self._active_name(db) == name
        )

    def register_version(
        self, name: str, dim: int, bundle_uri: str = "", expected_vectors: int = DEFAULT_EXPECTED_VECTORS
    ) -> ModelVersion:
        check_id(name, "model version")
        if not isinstance(dim, int) or dim < 1:
            raise VersionConflict(f"dim must be a positive int, got {dim!r}")
        with self._tx() as db:
            try:
                existing = self._version(db, name)
            except VersionNotFound:
                # ids are never reused: a dropped then re-registered name gets fresh storage
                row = db.execute("SELECT v FROM meta WHERE k = 'next_id'").fetchone()
                vid = int(row[0]) if row else 1
                db.execute("INSERT OR REPLACE INTO meta(k, v) VALUES ('next_id', ?)", (str(vid + 1),))
                db.execute(
                    "INSERT INTO versions VALUES (?, ?, ?, ?, 'filling', ?)", (name, vid, dim, bundle_uri, time.time())
                )
                return self._version(db, name)
            if existing.dim != dim:
                raise VersionConflict(f"version {name!r} is registered with dim {existing.dim}, not {dim}")
            return existing

    def get_version(self, name: str) -> ModelVersion:
        with self._reading():
            return self._version(self._db, name)

    def list_versions(self) -> list[ModelVersion]:
        with self._reading():
            names = [r[0] for r in self._db.execute("SELECT name FROM versions ORDER BY id")]
            return [self._version(self._db, n) for n in names]

    def active_version(self) -> ModelVersion | None:
        with self._reading():
            name = self._active_name(self._db)
            return self._version(self._db, name) if name else None

    def set_version_state(self, name: str, state: VersionState) -> ModelVersion:
        state = VersionState(state)
        with self._tx() as db:
            self._version(db, name)
            db.execute("UPDATE versions SET state = ? WHERE name = ?", (state.value, name))
            return self._version(db, name)

    def activate(self, name: str) -> ModelVersion:
        with self._tx() as db:
            self._version(db, name)
            db.execute("UPDATE versions SET state = 'ready' WHERE name = ?", (name,))
            db.execute("INSERT OR REPLACE INTO meta(k, v) VALUES ('active', ?)", (name,))
            return self._version(db, name)

    def drop_version(self, name: str) -> None:
        with self._tx() as db:
            v = self._version(db, name)
            if v.active:
                raise VersionInUse(f"version {name!r} is active; activate another one before dropping it")
            db.execute("DELETE FROM versions WHERE name = ?", (name,))
            for table in ("vectors", "vgen", "blocks", "topics"):
                db.execute(f"DELETE FROM {table} WHERE vid = ?", (v.id,))

    # -- vectors --------------------------------------------------------------------------------
    def put_vector(self, version: str, image_hash: str, vector: object) -> None:
        check_id(image_hash, "image_hash")
        with self._tx() as db:
            v = self._version(db, version)
            blob = normalised_fp16(vector, v.dim).tobytes()
            db.execute("INSERT OR REPLACE INTO vectors(vid, hash, vec) VALUES (?, ?, ?)", (v.id, image_hash, blob))
            # only this version's blocks change: the active version keeps its warm blocks
            db.execute(
                "INSERT INTO vgen(vid, eid, gen) SELECT ?, eid, 1 FROM (" + _EXHIBITIONS_OF_HASH + ") "
                "WHERE true ON CONFLICT(vid, eid) DO UPDATE SET gen = gen + 1",
                (v.id, image_hash),
            )
            self._bump_catalogue(db, self._products_of_hashes(db, [image_hash]))

    def put_vectors(self, version: str, items: Sequence[tuple[str, object]]) -> None:
        """Bulk put in one transaction (re-index batches, benchmarks)."""
        with self._tx() as db:
            v = self._version(db, version)
            rows = [(v.id, check_id(h, "image_hash"), normalised_fp16(vec, v.dim).tobytes()) for h, vec in items]
            db.executemany("INSERT OR REPLACE INTO vectors(vid, hash, vec) VALUES (?, ?, ?)", rows)
            db.executemany(
                "INSERT INTO vgen(vid, eid, gen) SELECT ?, eid, 1 FROM ("
                + _EXHIBITIONS_OF_HASH
                + ") WHERE true ON CONFLICT(vid, eid) DO UPDATE SET gen = gen + 1",
                [(v.id, h) for _, h, _ in rows],
            )
            self._bump_catalogue(db, self._products_of_hashes(db, [h for _, h, _ in rows]))

    def get_vector(self, version: str, image_hash: str) -> np.ndarray:
        with self._reading():
            v = self._version(self._db, version)
            row = self._db.execute("SELECT vec FROM vectors WHERE vid = ? AND hash = ?", (v.id, image_hash)).fetchone()
        if row is None:
            raise VectorNotFound(f"no vector for image {image_hash!r} in version {version!r}")
        return np.frombuffer(row[0], dtype="<f2").copy()

    def has_vector(self, version: str, image_hash: str) -> bool:
        try:
            self.get_vector(version, image_hash)
        except VectorNotFound:
            return False
        return True

    def missing_vectors(self, version: str, limit: int = 1000) -> list[tuple[str, str]]:
        with self._reading():
            v = self._version(self._db, version)
            rows = self._db.execute(
                "SELECT p.hash, MIN(p.src) FROM products p WHERE p.status = 'encoded' AND NOT EXISTS "
                "(SELECT 1 FROM vectors x WHERE x.vid = ? AND x.hash = p.hash) GROUP BY p.hash LIMIT ?",
                (v.id, limit),
            ).fetchall()
        return [(h, s) for h, s in rows]

    def coverage(self, versions: Sequence[str]) -> Coverage:
        with self._reading() as db:
            products, encoded, failed = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(status = 'encoded'), 0), COALESCE(SUM(status = 'failed'), 0) "
                "FROM products"
            ).fetchone()
            covered = {}
            for name in versions:
                row = db.execute("SELECT id FROM versions WHERE name = ?", (name,)).fetchone()
                covered[name] = (
                    0
                    if row is None
                    else db.execute(
                        "SELECT COUNT(*) FROM products p JOIN vectors x ON x.vid = ? AND x.hash = p.hash "
                        "WHERE p.status = 'encoded'",
                        (row[0],),
                    ).fetchone()[0]
                )
        return Coverage(products=products, encoded=encoded, covered=covered, failed=failed)

    def iter_product_vectors(self, version: str, batch_size: int = 10_000) -> Iterator[tuple[list[str], np.ndarray]]:
        with self._reading():
            v = self._version(self._db, version)
            rows = self._db.execute(
                "SELECT p.pid, x.vec FROM products p JOIN vectors x ON x.vid = ? AND x.hash = p.hash "
                "WHERE p.status = 'encoded' ORDER BY p.pid",
                (v.id,),
            ).fetchall()
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            mat = np.frombuffer(b"".join(r[1] for r in chunk), dtype="<f2").reshape(len(chunk), v.dim)
            yield [r[0] for r in chunk], mat

    # -- topic cache ----------------------------------------------------------------------------
    def put_topic_embedding(self, version: str, topic_key: str, vector: object) -> None:
        check_id(topic_key, "topic_key")
        blob = finite_float32(vector).tobytes()
        with self._tx() as db:
            v = self._version(db, version)
            db.execute("INSERT OR REPLACE INTO topics(vid, key, vec) VALUES (?, ?, ?)", (v.id, topic_key, blob))

    def get_topic_embedding(self, version: str, topic_key: str) -> np.ndarray | None:
        with self._reading():
            v = self._version(self._db, version)
            row = self._db.execute("SELECT vec FROM topics WHERE vid = ? AND key = ?", (v.id, topic_key)).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype=np.float32).copy()

    # -- ranking --------------------------------------------------------------------------------
    def _fetch_block(
        self, exhibition_id: str, version: str | None, cached: CachedBlock | None
    ) -> tuple[str, str, bytes | None]:
        with self._reading():
            db = self._db
            name = version or self._active_name(db)
            if name is None:
                raise NoActiveVersion("no model version has been activated")
            v = self._version(db, name)
            stamp = self._stamp(db, v, exhibition_id)
            if cached is not None and cached.version == name and cached.stamp == stamp:
                return name, stamp, None
            stored = db.execute(
                "SELECT stamp, data FROM blocks WHERE vid = ? AND eid = ?", (v.id, exhibition_id)
            ).fetchone()
            if stored is not None and stored[0] == stamp:
                return name, stamp, stored[1]
            data = self._build_block(db, v, exhibition_id)
            # The stamp was read in the same locked section, so it describes exactly this data.
            with self._tx() as tx:
                tx.execute(
                    "INSERT OR REPLACE INTO blocks(vid, eid, stamp, data) VALUES (?, ?, ?, ?)",
                    (v.id, exhibition_id, stamp, data),
                )
            return name, stamp, data

    @staticmethod
    def _stamp(db: sqlite3.Connection, v: ModelVersion, exhibition_id: str) -> str:
        row = db.execute("SELECT gen FROM exhibitions WHERE eid = ?", (exhibition_id,)).fetchone()
        if row is None:
            raise ExhibitionNotFound(f"unknown exhibition {exhibition_id!r}")
        vg = db.execute("SELECT gen FROM vgen WHERE vid = ? AND eid = ?", (v.id, exhibition_id)).fetchone()
        return f"{v.id}:{row[0]}:{vg[0] if vg else 0}"

    def block_stamp(self, exhibition_id: str, job_ids: Sequence[str] = ()) -> tuple[str, str, list[dict | None]]:
        with self._reading() as db:
            name = self._active_name(db)
            if name is None:
                raise NoActiveVersion("no model version has been activated")
            stamp = self._stamp(db, self._version(db, name), exhibition_id)
            jobs = [db.execute("SELECT v FROM meta WHERE k = ?", ("job:" + j,)).fetchone() for j in job_ids]
        return name, stamp, [json.loads(row[0]) if row else None for row in jobs]

    # Answers: one process uses this store, so its memory is where they are shared (nothing to
    # gain from writing them to disk); bounded by bytes, oldest first out.
    def put_answer(self, key: str, body: bytes, ttl_s: int) -> None:
        with self._answers_lock:
            old = self._answers.pop(key, None)
            if old is not None:
                self._answer_bytes -= len(old[1])
            self._answers[key] = (time.monotonic() + ttl_s, bytes(body))
            self._answer_bytes += len(body)
            while self._answer_bytes > _ANSWER_BYTES and len(self._answers) > 1:
                _, (_, dropped) = self._answers.popitem(last=False)
                self._answer_bytes -= len(dropped)

    def exhibitions_of(self, product_ids: Sequence[str]) -> list[str]:
        ids = list(dict.fromkeys(product_ids))
        found: set[str] = set()
        with self._reading() as db:
            for start in range(0, len(ids), 500):  # sqlite's bound-parameter limit
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(
                    row[0] for row in db.execute(f"SELECT DISTINCT eid FROM members WHERE pid IN ({marks})", chunk)
                )
        return sorted(found)

    # One process uses this store: claims and precompute notices stay in its memory.
    def claim(self, key: str, ttl_s: int) -> bool:
        now = time.monotonic()
        with self._answers_lock:
            if self._claims.get(key, 0.0) > now:
                return False
            if len(self._claims) > 10_000:  # bounded: drop the expired ones
                self._claims = {k: t for k, t in self._claims.items() if t > now}
            self._claims[key] = now + max(1, int(ttl_s))
            return True

    def announce_precomputed(self, version: str, exhibition_ids: Sequence[str]) -> None:
        for listener in list(self._listeners):
            if exhibition_ids:
                listener(version, list(exhibition_ids))

    def on_precomputed(self, listener: Callable[[str, list[str]], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def get_answer(self, key: str) -> bytes | None:
        with self._answers_lock:
            hit = self._answers.get(key)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self._answers[key]
                self._answer_bytes -= len(hit[1])
                return None
            self._answers.move_to_end(key)
            return hit[1]

    @staticmethod
    def _build_block(db: sqlite3.Connection, v: ModelVersion, exhibition_id: str) -> bytes:
        rows = db.execute(
            "SELECT m.pid, p.status, x.vec FROM members m "
            "LEFT JOIN products p ON p.pid = m.pid "
            "LEFT JOIN vectors x ON x.vid = ? AND x.hash = p.hash AND p.status = 'encoded' "
            "WHERE m.eid = ? ORDER BY m.pos",
            (v.id, exhibition_id),
        ).fetchall()
        scored, vecs, pending, failed, unknown = [], [], [], [], []
        for pid, status, vec in rows:
            if status is None:
                unknown.append(pid)
            elif status == "failed":
                failed.append(pid)
            elif vec is None:
                pending.append(pid)
            else:
                scored.append(pid)
                vecs.append(vec)
        return encode_block(v.dim, scored, b"".join(vecs), pending, failed, unknown)
