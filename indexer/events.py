"""Shopper events (impressions, clicks, conversions) in a Redis Stream, counted exactly once.

    POST /events ──► XADD <prefix>ev:s (MAXLEN ~ max_len) ──► consumer group "counters"
        ──► one Lua script per batch: count each event whose event_id was not counted before
            (HINCRBY <prefix>ev:c:<exhibition> "<model_version>|<arm>|<product>|<type>")
            and XACK it, atomically

Why one script: a consumer killed between counting and acknowledging would otherwise count
again when its entries are claimed back. Either an entry is counted and acknowledged, or it is
still pending and another consumer claims it (XAUTOCLAIM after ``claim_idle_ms``). A client that
sends the same event twice (a retry) is counted once: each event_id is remembered for
``dedupe_ttl_s`` (default 7 days). Keys all start with ``<prefix>ev:``; on a Redis Cluster
that is the hash tag ``{<prefix>ev:}`` (indexer/redis_client.py), since the script touches the
stream, the seen-markers and the counters together: all events of a store live on one master.

The embedded store (one machine, no Redis) has ``EmbeddedEventLog``: events are counted as they
are appended, in the same sqlite transaction, once per event_id (a primary key); no consumer.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from indexer.redis_client import RedisClient, is_cluster, key_group, redis_client

GROUP = "counters"
EVENT_TYPES = ("impression", "click", "conversion")

# KEYS: stream; ARGV: key base (the stream's group: same slot), consumer group, dedupe ttl,
# then (entry id, event id, counter key, field)
_COMMIT = r"""
local stream, b, group, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local counted = 0
for i = 4, #ARGV, 4 do
  local entry, event_id, ckey, field = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('SET', b .. 'seen:' .. event_id, '1', 'NX', 'EX', ttl) then
    redis.call('HINCRBY', b .. 'c:' .. ckey, field, 1)
    counted = counted + 1
  end
  redis.call('XACK', stream, group, entry)
end
redis.call('HINCRBY', b .. 'stats', 'counted', counted)
redis.call('HINCRBY', b .. 'stats', 'duplicates', (#ARGV - 3) / 4 - counted)
return counted
"""


@dataclass(frozen=True)
class EventLogConfig:
    max_len: int = 10_000_000  # stream entries kept (approximate trim: MAXLEN ~)
    dedupe_ttl_s: int = 7 * 24 * 3600  # how long a counted event_id is remembered
    claim_idle_ms: int = 30_000  # an entry pending this long on a dead consumer is claimed


class RedisEventLog:
    def __init__(self, client: RedisClient, prefix: str, config: EventLogConfig = EventLogConfig()) -> None:
        self.r, self.p, self.config = client, prefix, config
        self.base = key_group(prefix, "ev:", is_cluster(client))  # every key of the log starts so
        self.stream = self.base + "s"
        self._commit = self.r.register_script(_COMMIT)
        self._group_ready = False

    @classmethod
    def from_url(cls, url: str, prefix: str, config: EventLogConfig = EventLogConfig()) -> "RedisEventLog":
        return cls(redis_client(url), prefix, config)

    def append(self, events: Sequence[Mapping[str, object]]) -> int:
        """Add validated events to the stream (one pipelined round trip)."""
        pipe = self.r.pipeline(transaction=False)
        for event in events:
            pipe.xadd(
                self.stream,
                {"e": json.dumps(event, separators=(",", ":"))},
                maxlen=self.config.max_len,
                approximate=True,
            )
        pipe.execute()
        return len(events)

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.r.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def read(self, consumer: str, count: int = 500, block_ms: int = 1000) -> list[tuple[str, dict]]:
        """Entries for this consumer: first those a dead consumer left pending too long, then new
        ones (waiting up to block_ms)."""
        self._ensure_group()
        _, claimed, _ = self.r.xautoclaim(
            self.stream, GROUP, consumer, self.config.claim_idle_ms, start_id="0-0", count=count
        )
        entries = [e for e in claimed if e[1]]  # trimmed entries come back without fields
        if not entries:
            found = self.r.xreadgroup(GROUP, consumer, {self.stream: ">"}, count=count, block=block_ms)
            entries = found[0][1] if found else []
        return [(entry_id.decode(), json.loads(fields[b"e"])) for entry_id, fields in entries]

    def commit(self, entries: Sequence[tuple[str, dict]]) -> int:
        """Count (once per event_id) and acknowledge these entries, atomically; returns how many
        were counted (the rest were duplicates)."""
        if not entries:
            return 0
        args: list[object] = [self.base, GROUP, self.config.dedupe_ttl_s]
        for entry_id, e in entries:
            field = f"{e.get('model_version') or ''}|{e.get('arm') or ''}|{e['product_id']}|{e['type']}"
            args += [entry_id, e["event_id"], e["exhibition_id"], field]
        return int(self._commit(keys=[self.stream], args=args))

    def counters(self, exhibition_id: str) -> dict[tuple[str, str, str, str], int]:
        """(model_version, arm, product_id, type) -> count for one exhibition."""
        raw = self.r.hgetall(self.base + "c:" + exhibition_id)
        out = {}
        for field, n in raw.items():
            version, arm, product, kind = field.decode().split("|")  # ids never hold "|" (api.schemas.ID_PATTERN)
            out[(version, arm, product, kind)] = int(n)
        return out

    def exhibitions(self) -> list[str]:
        """Exhibitions that have counters (an experiment over every exhibition sums these)."""
        start = len(self.p) + len("ev:c:")
        return sorted(k.decode()[start:] for k in self.r.scan_iter(match=self.p + "ev:c:*", count=1000))

    def stats(self) -> dict[str, int]:
        pending = 0
        try:
            pending = int(self.r.xpending(self.stream, GROUP)["pending"])
        except redis.ResponseError:
            pass
        raw = self.r.hgetall(self.base + "stats")
        return {
            "stream_length": int(self.r.xlen(self.stream)),
            "pending": pending,
            **{k.decode(): int(v) for k, v in raw.items()},
        }


def consume(
    log: RedisEventLog,
    consumer: str,
    batch: int = 500,
    block_ms: int = 1000,
    stop_after_idle: float | None = None,
    on_batch=None,
    before_commit=None,
) -> int:
    """Count events until interrupted (or until nothing arrived for stop_after_idle seconds);
    returns the events counted. `before_commit(entries)` runs before a batch is counted and
    acknowledged (the day files: written first, so a kill can repeat a line there, never lose
    one; readers drop repeats by event_id)."""
    total, idle_since = 0, time.monotonic()
    while True:
        entries = log.read(consumer, batch, block_ms)
        if entries:
            if before_commit:
                before_commit(entries)
            total += log.commit(entries)
            idle_since = time.monotonic()
            if on_batch:
                on_batch(entries)
        elif stop_after_idle is not None and time.monotonic() - idle_since > stop_after_idle:
            return total


_EMBEDDED_SCHEMA = """
CREATE TABLE IF NOT EXISTS events(event_id TEXT PRIMARY KEY, received REAL NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters(
    exhibition_id TEXT NOT NULL, field TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY(exhibition_id, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats(k TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
"""


class EmbeddedEventLog:
    """The embedded store's event log (``events.sqlite3`` beside ``store.sqlite3``): append
    counts at once, exactly once per event_id, in one transaction (a crash leaves all or none of
    a batch). Same read side as RedisEventLog: counters() and stats()."""

    def __init__(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            Path(folder) / "events.sqlite3", isolation_level=None, check_same_thread=False, timeout=5.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_EMBEDDED_SCHEMA)
        self._lock = threading.Lock()

    def append(self, events: Sequence[Mapping[str, object]]) -> int:
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                counted = 0
                for e in events:
                    new = db.execute(
                        "INSERT OR IGNORE INTO events(event_id, received, doc) VALUES (?, ?, ?)",
                        (e["event_id"], now, json.dumps(e, separators=(",", ":"))),
                    ).rowcount
                    if new:
                        field = f"{e.get('model_version') or ''}|{e.get('arm') or ''}|{e['product_id']}|{e['type']}"
                        db.execute(
                            "INSERT INTO counters VALUES (?, ?, 1) ON CONFLICT(exhibition_id, field) "
                            "DO UPDATE SET n = n + 1",
                            (e["exhibition_id"], field),
                        )
                        counted += 1
                for key, n in (("counted", counted), ("duplicates", len(events) - counted)):
                    db.execute("INSERT INTO stats VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET n = n + ?", (key, n, n))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return len(events)

    def counters(self, exhibition_id: str) -> dict[tuple[str, str, str, str], int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT field, n FROM counters WHERE exhibition_id = ?", (exhibition_id,)
            ).fetchall()
        return {tuple(field.split("|")): n for field, n in rows}  # ids never hold "|"

    def exhibitions(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT exhibition_id FROM counters ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def iter_events(self, since: float = 0.0, batch: int = 10_000):
        """Every logged event (each event_id once, in event_id order): what `clik data events` reads
        on the embedded store, where the log itself is the day files' equivalent."""
        last = ""
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT event_id, doc FROM events WHERE received >= ? AND event_id > ? ORDER BY event_id LIMIT ?",
                    (since, last, batch),
                ).fetchall()
            if not rows:
                return
            for _event_id, doc in rows:
                yield json.loads(doc)
            last = rows[-1][0]

    def stats(self) -> dict[str, int]:
        with self._lock:
            stats = dict(self._db.execute("SELECT k, n FROM stats").fetchall())
            length = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return {"stream_length": length, "pending": 0, **stats}

    def close(self) -> None:
        self._db.close()


def event_log_for(store):
    """The shopper-event log beside a store: a Redis Stream on its Redis, or for the embedded
    store a sqlite file in its folder (counted as appended: no consumer needed); None for a
    store of another kind."""
    from indexer.embedded_store import EmbeddedStore
    from indexer.redis_store import RedisStore

    if isinstance(store, RedisStore):
        return RedisEventLog(store.r, store.prefix)
    if isinstance(store, EmbeddedStore):
        return EmbeddedEventLog(store.config.path)
    return None
