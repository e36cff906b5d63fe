"""Celery tasks: thin wrappers over worker.encode."""
from __future__ import annotations

import logging
import threading

from indexer.config import open_store
from indexer.errors import NoActiveVersion
from indexer.store import VectorStore
from worker.app import app, settings
from worker.encode import EncoderCache, encode_products as _encode

log = logging.getLogger(__name__)

_lock = threading.Lock()
_store: VectorStore | None = None
_encoders: EncoderCache | None = None


def _resources() -> tuple[VectorStore, EncoderCache]:
    """One store client and one encoder cache per worker process, opened on first use."""
    global _store, _encoders
    with _lock:
        if _store is None:
            _store = open_store(settings.store_url, prefix=settings.store_prefix)
        if _encoders is None:
            _encoders = EncoderCache(settings.device, settings.batch_size, settings.max_encoders)
        return _store, _encoders


@app.task(bind=True, name="clik.encode_products", max_retries=None)
def encode_products(self, product_ids: list[str]) -> dict:
    """Encode these products' images with the active model version (idempotent)."""
    store, encoders = _resources()
    retries = self.request.retries
    try:
        report = _encode(store, product_ids, encoders, settings.fetch_limits())
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
