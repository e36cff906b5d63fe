"""Celery tasks: thin wrappers over worker.encode / worker.ingest / worker.reindex."""
from __future__ import annotations

import logging
import threading
import time

import redis
from celery.signals import worker_ready

from indexer.config import open_store
from indexer.errors import NoActiveVersion, VersionNotFound
from indexer.store import VectorStore
from worker import device, reindex
from worker.app import app, settings
from worker.encode import EncoderCache, encode_products as _encode
from worker.ingest import DrainOptions, drain
from worker.pending import PendingSet

log = logging.getLogger(__name__)

_lock = threading.Lock()
_store: VectorStore | None = None
_encoders: EncoderCache | None = None
_pending: PendingSet | None = None


def _resources() -> tuple[VectorStore, EncoderCache, PendingSet | None]:
    """One store client, one encoder cache (and the pending set on Redis) per worker process."""
    global _store, _encoders, _pending
    with _lock:
        if _store is None:
            _store = open_store(settings.store_url, prefix=settings.store_prefix)
            if settings.group_pending and settings.store_url.startswith(("redis://", "rediss://", "unix://")):
                _pending = PendingSet(redis.Redis.from_url(settings.store_url), settings.store_prefix)
        if _encoders is None:
            name = device.configure(settings.device, settings.torch_threads)
            _encoders = EncoderCache(name, settings.batch_size, settings.max_encoders)
        return _store, _encoders, _pending


@app.task(bind=True, name="clik.encode_products", max_retries=None)
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
        report = _encode(store, product_ids, encoders, settings.fetch_limits(),
                         decode_threads=settings.decode_threads)
    except NoActiveVersion as exc:
        if retries >= settings.max_retries:
            raise
        raise self.retry(exc=exc, countdown=settings.retry_delay(retries))
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
    return report.as_dict()


def _check_ids(product_ids: object) -> None:
    # A malformed message fails at once with a reason (and is not retried); a bare string would
    # otherwise be read as a list of one-letter ids.
    if not isinstance(product_ids, list) or not all(isinstance(p, str) and p for p in product_ids):
        raise ValueError(f"clik.encode_products takes a list of product id strings, got {product_ids!r:.200}")


def _schedule_drain(pending: PendingSet, countdown: float | None = None) -> None:
    # One drain queued at a time: a burst of events queues one drain behind them (FIFO), which
    # then finds them all waiting. The flag expires in case its drain message is ever lost.
    if countdown is not None or pending.claim_schedule(ttl_s=120):
        app.send_task("clik.encode_pending", queue=settings.queue,
                      countdown=countdown if countdown is not None else settings.batch_window_s or None)


@app.task(bind=True, name="clik.encode_pending", max_retries=None, ignore_result=True)  # report: in the log
def encode_pending(self) -> dict:
    """Encode every waiting product in batches of ``batch_size`` (see worker/ingest.py)."""
    store, encoders, pending = _resources()
    if pending is None:
        return {"skipped": "the store is not Redis: no pending set"}
    options = DrainOptions(batch_size=settings.batch_size, decode_threads=settings.decode_threads,
                           max_retries=settings.max_retries, retry_delay=settings.retry_delay)
    try:
        report, next_in = drain(store, pending, self.request.id, encoders, settings.fetch_limits(), options)
    except NoActiveVersion as exc:
        raise self.retry(exc=exc, countdown=settings.retry_delay(min(self.request.retries, 8)))
    if next_in is not None:  # products postponed after a transient error
        _schedule_drain(pending, countdown=next_in)
    return report.as_dict()


@worker_ready.connect
def _drain_on_start(sender=None, **_) -> None:
    """A fresh worker looks for waiting products once (a drain message lost with a purge)."""
    try:
        _, _, pending = _resources()
        if pending is not None and len(pending):
            app.send_task("clik.encode_pending", queue=settings.queue)
    except Exception:  # never keep a worker from starting
        log.exception("could not queue the start-up drain")


@app.task(bind=True, name="clik.reindex", max_retries=None)
def reindex_version(self, version: str, bundle_uri: str | None = None, retry_skipped: bool = False) -> dict:
    """Re-index every image for `version`, switch to it, schedule the drop of the old one.

    Each run works for at most ``reindex_task_s`` and then enqueues itself again, so no single
    message outlives the broker's visibility timeout; a run killed midway is redelivered
    (late ack) and resumes from the store (only missing vectors are encoded).
    """
    if not isinstance(version, str) or not version:
        raise ValueError(f"clik.reindex takes a model version name, got {version!r:.200}")
    store, encoders, _ = _resources()
    if bundle_uri:
        from clik.checkpoint import read_bundle_info

        info = read_bundle_info(bundle_uri)
        if info.version != version:
            raise ValueError(f"bundle at {bundle_uri} is version {info.version}, not {version}")
        store.register_version(version, info.embed_dim, bundle_uri=str(bundle_uri))
    try:
        progress = reindex.start(store, version, retry_skipped)
    except VersionNotFound:
        raise ValueError(f"model version {version} is not registered: pass bundle_uri") from None
    options = reindex.ReindexOptions(chunk_size=settings.reindex_chunk_size,
                                     decode_threads=settings.decode_threads)
    limits = settings.fetch_limits()
    deadline = time.monotonic() + settings.reindex_task_s
    if progress.state == reindex.FILLING:
        if not reindex.fill(store, progress, encoders, limits, options, deadline=deadline):
            app.send_task("clik.reindex", args=[version], queue=settings.queue, ignore_result=True)
            return {"version": version, "state": progress.state, "done": progress.done,
                    "total": progress.total, "continued": True}
        reindex.switch(store, progress)
    reindex.fill(store, progress, encoders, limits, options, deadline=deadline)
    if progress.state == reindex.SWITCHED:
        app.send_task("clik.drop_previous_version", args=[version], queue=settings.queue,
                      countdown=settings.reindex_drop_grace_s)
    return {"version": version, "state": progress.state, "done": progress.done, "total": progress.total,
            "skipped": progress.skipped, "continued": False}


@app.task(name="clik.drop_previous_version", ignore_result=True)
def drop_previous_version(version: str) -> dict:
    """After the grace period: drop the version that was active before `version`'s re-index."""
    store, _, _ = _resources()
    progress = reindex.ReindexProgress.load(store, version)
    if progress is None or progress.state == reindex.FILLING:
        return {"version": version, "dropped": None}
    reindex.drop_previous(store, progress)
    return {"version": version, "dropped": progress.previous}
