"""Celery tasks: thin wrappers over worker.encode / worker.ingest / worker.reindex."""

from __future__ import annotations

import logging
import threading
import time

from celery.signals import worker_ready

from indexer.config import open_store
from indexer.contracts import (
    DROP_PREVIOUS_VERSION,
    ENCODE_PENDING,
    ENCODE_PRODUCTS,
    PRECOMPUTE_EXHIBITIONS,
    REINDEX,
    REINDEX_CHUNK,
)
from indexer.errors import NoActiveVersion, VersionNotFound
from indexer.pending import PendingSet
from indexer.store import VectorStore
from indexer.store_settings import stored_file_roots
from worker import canary, device, precompute, refresh, reindex
from worker.app import app, settings
from worker.encode import EncoderCache, encode_products as _encode
from worker.ingest import DrainOptions, drain

log = logging.getLogger(__name__)

_lock = threading.Lock()
_store: VectorStore | None = None
_encoders: EncoderCache | None = None
_pending: PendingSet | None = None
_topic_sides: precompute.TopicSides | None = None


def _resources() -> tuple[VectorStore, EncoderCache, PendingSet | None]:
    """One store client, one encoder cache (and the store's pending set, where it keeps one:
    indexer.pending) per worker process."""
    global _store, _encoders, _pending
    with _lock:
        if _store is None:
            _store = open_store(settings.store_url, prefix=settings.store_prefix)
            if settings.group_pending:
                _pending = _store.pending_set(lease_s=settings.pending_lease_s)
        if _encoders is None:
            name = device.configure(settings.device, settings.torch_threads)
            _encoders = EncoderCache(name, settings.batch_size, settings.max_encoders, **settings.encoder_options())
        return _store, _encoders, _pending


def _sides(store: VectorStore) -> precompute.TopicSides:
    """The text sides this worker process loaded for precomputing (one per version, kept)."""
    global _topic_sides
    with _lock:
        if _topic_sides is None:
            _topic_sides = precompute.TopicSides(store, device=settings.device or "cpu", size=settings.max_encoders)
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

    On a store with a pending set (Redis) the products are recorded in it and one drain
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
        report = _encode(store, product_ids, encoders, _limits(store), decode_threads=settings.decode_threads)
    except NoActiveVersion as exc:
        if retries >= settings.max_retries:
            raise
        raise self.retry(exc=exc, countdown=settings.retry_delay(retries))  # noqa: B904 (retry() raises itself: Celery's idiom)
    if report.retry:
        if retries < settings.max_retries:
            # Only the products that hit a transient error go round again.
            log.info(
                "retrying %d products in %.1fs: %s", len(report.retry), settings.retry_delay(retries), report.retry
            )
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
            app.send_task(
                PRECOMPUTE_EXHIBITIONS,
                args=[exhibitions[start : start + 500]],
                queue=settings.queue,
                countdown=settings.refresh_window_s,
            )
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
        app.send_task(
            ENCODE_PENDING,
            queue=settings.queue,
            countdown=countdown if countdown is not None else settings.batch_window_s or None,
        )


@app.task(bind=True, name=ENCODE_PENDING, max_retries=None, ignore_result=True)  # report: in the log
def encode_pending(self) -> dict:
    """Encode every waiting product in batches of ``batch_size`` (see worker/ingest.py)."""
    store, encoders, pending = _resources()
    if pending is None:
        return {"skipped": "the store is not Redis: no pending set"}
    options = DrainOptions(
        batch_size=settings.batch_size,
        decode_threads=settings.decode_threads,
        max_retries=settings.max_retries,
        retry_delay=settings.retry_delay,
        max_task_s=settings.drain_task_s,
    )
    try:
        report, next_in = drain(
            store,
            pending,
            self.request.id,
            encoders,
            _limits(store),
            options,
            on_encoded=lambda ids: _refresh_exhibitions(store, ids),
        )
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


class _CeleryDispatch:
    """The coordinator's work, sent as tasks on the queue (worker.reindex.ReindexDispatch)."""

    def send_chunk(self, version: str, chunk_id: str, items: list[tuple[str, str]]) -> None:
        app.send_task(
            REINDEX_CHUNK, args=[version, chunk_id, [list(i) for i in items]], queue=settings.queue, ignore_result=True
        )

    def send_continuation(self, version: str, token: str, wait_s: float) -> None:
        app.send_task(
            REINDEX, args=[version], kwargs={"token": token, "wait_s": wait_s}, queue=settings.queue, ignore_result=True
        )

    def send_drop(self, version: str, countdown_s: float) -> None:
        app.send_task(DROP_PREVIOUS_VERSION, args=[version], queue=settings.queue, countdown=countdown_s)


@app.task(bind=True, name=REINDEX, max_retries=None)
def reindex_version(
    self,
    version: str,
    bundle_uri: str | None = None,
    retry_skipped: bool = False,
    token: str | None = None,
    wait_s: float = 0.0,
) -> dict:
    """Coordinate the re-index of every image for `version` across the workers on the queue:
    one check of worker.reindex.Coordinator.step per run (sent by a user: no `token`; by the
    coordinator itself to continue: its token)."""
    if not isinstance(version, str) or not version:
        raise ValueError(f"clik.reindex takes a model version name, got {version!r:.200}")
    if token is not None and not isinstance(token, str):
        raise ValueError(f"clik.reindex token must be a string, got {token!r:.200}")
    store, encoders, _ = _resources()
    if bundle_uri:
        reindex.register_bundle(store, version, bundle_uri)
    coordinator = reindex.Coordinator(
        store,
        _CeleryDispatch(),
        reindex.CoordinatorOptions.from_settings(settings),
        encoders,
        limits=lambda: _limits(store),
        topic_sides=lambda: canary.bundle_topic_sides(store),
        prepare=lambda v: precompute.precompute_all(store, v, _sides(store)),
    )
    return coordinator.step(version, retry_skipped, token, wait_s)


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


@app.task(bind=True, name=REINDEX_CHUNK, max_retries=None, ignore_result=True)
def reindex_chunk(self, version: str, chunk_id: str, items: list[list[str]]) -> dict:
    """Encode one re-index chunk ([image hash, source] items) for `version` and record the
    result under ``reindex:<version>:chunk:<chunk_id>``; the coordinator counts it. Idempotent:
    a redelivered chunk encodes only what is still missing."""
    if not isinstance(version, str) or not version or not isinstance(chunk_id, str) or not chunk_id:
        raise ValueError(f"clik.reindex_chunk takes a version and a chunk id, got {version!r:.100}, {chunk_id!r:.100}")
    if not isinstance(items, list) or not all(
        isinstance(i, (list, tuple)) and len(i) == 2 and all(isinstance(x, str) and x for x in i) for i in items
    ):
        raise ValueError(f"clik.reindex_chunk takes a list of [image hash, source] pairs, got {items!r:.200}")
    store, encoders, _ = _resources()
    options = reindex.ReindexOptions(chunk_size=settings.reindex_chunk_size, decode_threads=settings.decode_threads)
    try:
        chunk = reindex.run_chunk(
            store,
            version,
            chunk_id,
            [(h, s) for h, s in items],
            self.request.hostname or "",
            encoders,
            _limits(store),
            options,
        )
    except VersionNotFound:
        chunk = None  # the version was dropped meanwhile: nothing to encode for
    if chunk is None:
        return {"version": version, "chunk": chunk_id, "nothing_to_do": True}
    return {"version": version, "chunk": chunk_id, "done": chunk.done, "skipped": chunk.skipped}


@app.task(name=DROP_PREVIOUS_VERSION, ignore_result=True)
def drop_previous_version(version: str) -> dict:
    """After the grace period: drop the version that was active before `version`'s re-index."""
    store, _, _ = _resources()
    return {"version": version, "dropped": reindex.drop_after_grace(store, version, settings.rollout_policy())}
