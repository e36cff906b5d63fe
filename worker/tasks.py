"""Celery tasks: thin wrappers over worker.encode / worker.ingest / worker.reindex."""
from __future__ import annotations

import logging
import threading
import time
import uuid

from celery.signals import worker_ready

from indexer.config import open_store
from indexer.contracts import (
    DROP_PREVIOUS_VERSION,
    ENCODE_PENDING,
    ENCODE_PRODUCTS,
    PRECOMPUTE_EXHIBITIONS,
    REINDEX,
    REINDEX_CHUNK,
    is_redis_url,
)
from indexer.errors import NoActiveVersion, VersionNotFound
from indexer.redis_client import redis_client
from indexer.store import VectorStore
from indexer.store_settings import stored_file_roots
from worker import canary, device, precompute, refresh, reindex, rollout
from worker.app import app, settings
from worker.encode import EncoderCache, encode_products as _encode
from worker.ingest import DrainOptions, drain
from worker.pending import PendingSet

log = logging.getLogger(__name__)

_lock = threading.Lock()
_store: VectorStore | None = None
_encoders: EncoderCache | None = None
_pending: PendingSet | None = None
_topic_sides: precompute.TopicSides | None = None


def _resources() -> tuple[VectorStore, EncoderCache, PendingSet | None]:
    """One store client, one encoder cache (and the pending set on Redis) per worker process."""
    global _store, _encoders, _pending
    with _lock:
        if _store is None:
            _store = open_store(settings.store_url, prefix=settings.store_prefix)
            if settings.group_pending and is_redis_url(settings.store_url):
                _pending = PendingSet(redis_client(settings.store_url), settings.store_prefix,
                                      lease_s=settings.pending_lease_s)
        if _encoders is None:
            name = device.configure(settings.device, settings.torch_threads)
            _encoders = EncoderCache(name, settings.batch_size, settings.max_encoders, **settings.encoder_options())
        return _store, _encoders, _pending


def _sides(store: VectorStore) -> precompute.TopicSides:
    """The text sides this worker process loaded for precomputing (one per version, kept)."""
    global _topic_sides
    with _lock:
        if _topic_sides is None:
            _topic_sides = precompute.TopicSides(store, device=settings.device or "cpu",
                                                 size=settings.max_encoders)
        return _topic_sides


_roots_cache: tuple[float, tuple[str, ...]] = (0.0, ())


def _limits(store: VectorStore):
    """Fetch limits with the folders the store recorded for its catalogue (re-read every 30 s:
    `clik index FOLDER` may add one while this worker runs)."""
    global _roots_cache
    read_at, roots = _roots_cache
    if time.monotonic() - read_at > 30.0:
        roots = stored_file_roots(store)
        _roots_cache = (time.monotonic(), roots)
    return settings.fetch_limits(roots)


@app.task(bind=True, name=ENCODE_PRODUCTS, max_retries=None)
def encode_products(self, product_ids: list[str]) -> dict:
    """Encode these products' images with the active model version (idempotent).

    On a Redis store the products are recorded in the pending set and one drain
    (``clik.encode_pending``) encodes everything waiting in batches; this returns at once.
    Otherwise they are encoded here.
    """
    _check_ids(product_ids)
    store, encoders, pending = _resources()
    if pending is not None:
        pending.add(product_ids)
        _schedule_drain(pending)
        return {"queued": list(dict.fromkeys(product_ids))}
    retries = self.request.retries
    try:
        report = _encode(store, product_ids, encoders, _limits(store),
                         decode_threads=settings.decode_threads)
    except NoActiveVersion as exc:
        if retries >= settings.max_retries:
            raise
        raise self.retry(exc=exc, countdown=settings.retry_delay(retries))  # noqa: B904 (retry() raises itself: Celery's idiom)
    if report.retry:
        if retries < settings.max_retries:
            # Only the products that hit a transient error go round again.
            log.info("retrying %d products in %.1fs: %s", len(report.retry),
                     settings.retry_delay(retries), report.retry)
            raise self.retry(args=[sorted(report.retry)], countdown=settings.retry_delay(retries))
        for pid, reason in report.retry.items():
            reason = f"gave up after {retries + 1} attempts: {reason}"
            store.mark_failed(pid, reason)
            report.failed[pid] = reason
        report.retry = {}
    _refresh_exhibitions(store, report.encoded)
    return report.as_dict()


def _refresh_exhibitions(store: VectorStore, encoded: list[str]) -> None:
    """The exhibitions of newly encoded products, precomputed again after the refresh window
    (worker/refresh.py). Never fails the encode: without it the first read computes."""
    try:
        exhibitions = refresh.exhibitions_to_refresh(store, encoded, settings.refresh_window_s)
        for start in range(0, len(exhibitions), 500):
            app.send_task(PRECOMPUTE_EXHIBITIONS, args=[exhibitions[start:start + 500]], queue=settings.queue,
                          countdown=settings.refresh_window_s)
    except Exception as exc:  # the store or the broker down: the vectors are written all the same
        log.warning("exhibitions of %d encoded products not refreshed: %s", len(encoded), exc)


def _check_ids(product_ids: object) -> None:
    # A malformed message fails at once with a reason (and is not retried); a bare string would
    # otherwise be read as a list of one-letter ids.
    if not isinstance(product_ids, list) or not all(isinstance(p, str) and p for p in product_ids):
        raise ValueError(f"clik.encode_products takes a list of product id strings, got {product_ids!r:.200}")


def _schedule_drain(pending: PendingSet, countdown: float | None = None) -> None:
    # One drain queued at a time: a burst of events queues one drain behind them (FIFO), which
    # then finds them all waiting. The flag expires in case its drain message is ever lost.
    if countdown is not None or pending.claim_schedule(ttl_s=120):
        app.send_task(ENCODE_PENDING, queue=settings.queue,
                      countdown=countdown if countdown is not None else settings.batch_window_s or None)


@app.task(bind=True, name=ENCODE_PENDING, max_retries=None, ignore_result=True)  # report: in the log
def encode_pending(self) -> dict:
    """Encode every waiting product in batches of ``batch_size`` (see worker/ingest.py)."""
    store, encoders, pending = _resources()
    if pending is None:
        return {"skipped": "the store is not Redis: no pending set"}
    options = DrainOptions(batch_size=settings.batch_size, decode_threads=settings.decode_threads,
                           max_retries=settings.max_retries, retry_delay=settings.retry_delay,
                           max_task_s=settings.drain_task_s)
    try:
        report, next_in = drain(store, pending, self.request.id, encoders, _limits(store), options,
                                on_encoded=lambda ids: _refresh_exhibitions(store, ids))
    except NoActiveVersion as exc:
        raise self.retry(exc=exc, countdown=settings.retry_delay(min(self.request.retries, 8)))  # noqa: B904
    if next_in is not None:  # postponed after a transient error, leased elsewhere, or time up
        _schedule_drain(pending, countdown=next_in or None)
    return report.as_dict()


@worker_ready.connect
def _drain_on_start(sender=None, **_) -> None:
    """A fresh worker looks for waiting products once (a drain message lost with a purge, a
    killed worker's batch: that drain waits for the lease to run out), then sweeps."""
    try:
        _, _, pending = _resources()
        if pending is not None and len(pending):
            app.send_task(ENCODE_PENDING, queue=settings.queue)
        if pending is not None and settings.pending_sweep_s > 0:
            threading.Thread(target=_sweep, args=(pending,), name="clik-pending-sweep", daemon=True).start()
    except Exception:  # never keep a worker from starting
        log.exception("could not queue the start-up drain")


def _sweep(pending: PendingSet) -> None:
    """Every pending_sweep_s: products claimable now (a dead drain's lease ran out) with no
    drain queued get one. Beat-free, so every worker sweeps; the schedule flag keeps it to one
    queued drain across them."""
    while True:
        time.sleep(settings.pending_sweep_s)
        try:
            if pending.next_due() == 0:
                _schedule_drain(pending)
        except Exception as exc:  # Redis away: the next round tries again
            log.warning("pending sweep failed: %s", exc)


@app.task(bind=True, name=REINDEX, max_retries=None)
def reindex_version(self, version: str, bundle_uri: str | None = None, retry_skipped: bool = False,
                    token: str | None = None, wait_s: float = 0.0) -> dict:
    """Coordinate the re-index of every image for `version` across the workers on the queue.

    Sent by a user (no `token`): start or resume the job. Each run checks once: it counts the
    finished chunks, hands out new ``clik.reindex_chunk`` tasks for what is missing, and queues
    its own continuation behind them (with a fresh `token`; a run whose token is not the job's
    current one is a stale duplicate and stops). When nothing is missing: switch, fill the
    stragglers, schedule the drop of the previous version.
    """
    if not isinstance(version, str) or not version:
        raise ValueError(f"clik.reindex takes a model version name, got {version!r:.200}")
    if token is not None and not isinstance(token, str):
        raise ValueError(f"clik.reindex token must be a string, got {token!r:.200}")
    store, encoders, _ = _resources()
    if bundle_uri:
        from clik.checkpoint import read_bundle_info

        info = read_bundle_info(bundle_uri)
        if info.version != version:
            raise ValueError(f"bundle at {bundle_uri} is version {info.version}, not {version}")
        store.register_version(version, info.embed_dim, bundle_uri=str(bundle_uri))
    if token is None:
        try:
            progress = reindex.start(store, version, retry_skipped)
        except VersionNotFound:
            raise ValueError(f"model version {version} is not registered: pass bundle_uri") from None
    else:
        # The wait happens here rather than as a countdown: a countdown message sits in one
        # worker's memory while it encodes chunks, and dies with it until the broker redelivers.
        time.sleep(min(max(float(wait_s), 0.0), settings.reindex_check_s))
        progress = reindex.load_record(store, version)
        if progress is None or progress.coordinator != token:
            return {"version": version, "superseded": True}
    if progress.state == reindex.REFUSED:
        return {"version": version, "state": progress.state, "decision": progress.decision}
    if progress.state == reindex.AWAITING and not progress.confirmed:
        return {"version": version, "state": progress.state, "decision": progress.decision}
    if progress.state == reindex.AWAITING:  # confirmed (clik models confirm): gate again, switch
        if not _gate(store, progress):
            return {"version": version, "state": progress.state, "decision": progress.decision}
        reindex.switch(store, progress, _prepare(store))
    if progress.state == reindex.FILLING:
        fanout = reindex.FanoutOptions(chunk_size=settings.reindex_chunk_size,
                                       max_in_flight=settings.reindex_chunks_in_flight,
                                       lease_s=settings.reindex_chunk_lease_s)
        chunks = reindex.plan_chunks(store, progress, fanout)
        if chunks is not None:
            for chunk, items in chunks:
                app.send_task(REINDEX_CHUNK, args=[version, chunk.chunk_id, [list(i) for i in items]],
                              queue=settings.queue, ignore_result=True)
            # Queued behind the chunks just sent (FIFO): it checks again once they were taken.
            _continue_reindex(store, progress, wait_s=0.0 if chunks else settings.reindex_check_s)
            return {"version": version, "state": progress.state, "done": progress.done, "total": progress.total,
                    "planned": len(chunks), "in_flight": progress.in_flight, "continued": True}
        if not _gate(store, progress):
            return {"version": version, "state": progress.state, "decision": progress.decision}
        reindex.switch(store, progress, _prepare(store))
    options = reindex.ReindexOptions(chunk_size=settings.reindex_chunk_size,
                                     decode_threads=settings.decode_threads)
    deadline = time.monotonic() + settings.reindex_task_s
    # Stragglers ingested with the old version while the last chunks ran: few, done here.
    if not reindex.fill(store, progress, encoders, _limits(store), options, deadline=deadline):
        _continue_reindex(store, progress, wait_s=0.0)
        return {"version": version, "state": progress.state, "done": progress.done,
                "total": progress.total, "continued": True}
    if progress.state == reindex.SWITCHED:
        app.send_task(DROP_PREVIOUS_VERSION, args=[version], queue=settings.queue,
                      countdown=settings.reindex_drop_grace_s)
    return {"version": version, "state": progress.state, "done": progress.done, "total": progress.total,
            "skipped": progress.skipped, "continued": False}


def _prepare(store: VectorStore):
    """What the switch runs first: every exhibition's topic and block for the new version."""
    return lambda version: precompute.precompute_all(store, version, _sides(store))


@app.task(name=PRECOMPUTE_EXHIBITIONS, ignore_result=True)
def precompute_exhibitions(exhibition_ids: list[str], version: str | None = None) -> dict:
    """Topic entries and packed blocks of these exhibitions (sent by the API after a PUT), so
    their first read pays for neither (worker/precompute.py). Idempotent."""
    if not isinstance(exhibition_ids, list) or not all(isinstance(e, str) and e for e in exhibition_ids):
        raise ValueError(f"clik.precompute_exhibitions takes a list of exhibition ids, got {exhibition_ids!r:.200}")
    if version is not None and (not isinstance(version, str) or not version):
        raise ValueError(f"clik.precompute_exhibitions version must be a name, got {version!r:.100}")
    store, _, _ = _resources()
    try:
        return precompute.precompute(store, exhibition_ids, _sides(store), version).as_dict()
    except (NoActiveVersion, VersionNotFound) as exc:
        return {"skipped": str(exc)}  # nothing to rank with (yet): the first read computes


def _gate(store: VectorStore, progress: reindex.ReindexProgress) -> bool:
    """The rollout gate before the switch (coverage, canary, confirmation); False: the job was
    refused or waits for a confirmation (recorded in the job; nothing switched)."""
    decision = reindex.gate(store, progress, settings.rollout_policy(), canary.bundle_topic_sides(store))
    return decision.action == rollout.SWITCH


def _continue_reindex(store: VectorStore, progress: reindex.ReindexProgress, wait_s: float) -> None:
    # Sent before the record names its token: a run killed in between is redelivered with the
    # token still current and goes on, and this continuation then finds itself superseded.
    token = uuid.uuid4().hex
    app.send_task(REINDEX, args=[progress.version], kwargs={"token": token, "wait_s": wait_s},
                  queue=settings.queue, ignore_result=True)
    progress.coordinator = token
    progress.save(store)


@app.task(bind=True, name=REINDEX_CHUNK, max_retries=None, ignore_result=True)
def reindex_chunk(self, version: str, chunk_id: str, items: list[list[str]]) -> dict:
    """Encode one re-index chunk ([image hash, source] items) for `version` and record the
    result under ``reindex:<version>:chunk:<chunk_id>``; the coordinator counts it. Idempotent:
    a redelivered chunk encodes only what is still missing."""
    if not isinstance(version, str) or not version or not isinstance(chunk_id, str) or not chunk_id:
        raise ValueError(f"clik.reindex_chunk takes a version and a chunk id, got {version!r:.100}, {chunk_id!r:.100}")
    if not isinstance(items, list) or not all(
            isinstance(i, (list, tuple)) and len(i) == 2 and all(isinstance(x, str) and x for x in i) for i in items):
        raise ValueError(f"clik.reindex_chunk takes a list of [image hash, source] pairs, got {items!r:.200}")
    store, encoders, _ = _resources()
    options = reindex.ReindexOptions(chunk_size=settings.reindex_chunk_size,
                                     decode_threads=settings.decode_threads)
    try:
        chunk = reindex.run_chunk(store, version, chunk_id, [(h, s) for h, s in items],
                                  self.request.hostname or "", encoders, _limits(store), options)
    except VersionNotFound:
        chunk = None  # the version was dropped meanwhile: nothing to encode for
    if chunk is None:
        return {"version": version, "chunk": chunk_id, "nothing_to_do": True}
    return {"version": version, "chunk": chunk_id, "done": chunk.done, "skipped": chunk.skipped}


@app.task(name=DROP_PREVIOUS_VERSION, ignore_result=True)
def drop_previous_version(version: str) -> dict:
    """After the grace period: drop the version that was active before `version`'s re-index."""
    store, _, _ = _resources()
    progress = reindex.load_record(store, version)
    if progress is None or progress.state == reindex.FILLING:
        return {"version": version, "dropped": None}
    dropped = reindex.drop_if_healthy(store, progress, settings.rollout_policy())
    return {"version": version, "dropped": progress.previous if dropped else None}
