"""The embedded default: encoding in a background thread of the API process (no Redis, no Celery).

``submit`` only queues product ids; one thread takes everything queued (up to ``batch_size``)
and calls encode_products, so a burst of single-product events becomes a few full batches.
Transient fetch errors are retried a few times with backoff, then the product is marked failed.
Nothing survives a process crash here (products stay ``pending`` in the store; ``clik index``
or a restart re-submitting pending products picks them up).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from clik.image_source import FetchLimits
from indexer.errors import NoActiveVersion, StoreError
from indexer.store import VectorStore
from worker.encode import EncodeReport, EncoderCache, encode_products

log = logging.getLogger(__name__)


class InProcessEncodeQueue:
    def __init__(
        self,
        store: VectorStore,
        encoders: EncoderCache,
        limits: FetchLimits,
        batch_size: int = 16,
        decode_threads: int = 2,
        max_attempts: int = 3,
        retry_backoff_s: float = 1.0,
        on_report: Callable[[EncodeReport], None] | None = None,
    ) -> None:
        self.store, self.encoders, self.limits = store, encoders, limits
        self.batch_size, self.decode_threads = batch_size, decode_threads
        self.max_attempts, self.retry_backoff_s = max_attempts, retry_backoff_s
        self.on_report = on_report
        self._queue: deque[str] = deque()
        self._attempts: dict[str, int] = {}
        self._cond = threading.Condition()
        self._unfinished = 0  # submitted ids not processed yet (join waits for 0)
        self._closed = False
        self.batches = 0  # forward passes made (batching is visible to tests and logs)
        self._thread = threading.Thread(target=self._loop, name="clik-encode-queue", daemon=True)
        self._thread.start()

    def submit(self, product_ids: list[str]) -> None:
        """Queue products for encoding; returns at once."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the encode queue is closed")
            self._queue.extend(product_ids)
            self._unfinished += len(product_ids)
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is processed; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._unfinished == 0, timeout)

    def close(self) -> None:
        """Stop after the batch in progress; queued ids stay pending in the store."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self) -> InProcessEncodeQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the background thread -------------------------------------------------------------------
    def _take(self) -> list[str] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._closed)
            if self._closed:
                return None
            n = min(self.batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            requeue: list[str] = []
            try:
                report = encode_products(
                    self.store, batch, self.encoders, self.limits, decode_threads=self.decode_threads
                )
                self.batches += 1
                requeue = self._handle_transient(report)
                if self.on_report:
                    self.on_report(report)
            except NoActiveVersion:
                log.warning("no active model version: %d products left pending", len(batch))
            except (StoreError, OSError, RuntimeError, ValueError) as exc:
                # One bad batch (a bundle that will not load, the store down) must not kill
                # the thread; the products stay pending.
                log.exception("encoding %d products failed: %s", len(batch), exc)
            with self._cond:
                self._queue.extend(requeue)
                self._unfinished -= len(batch) - len(requeue)
                self._cond.notify_all()

    def _handle_transient(self, report: EncodeReport) -> list[str]:
        requeue = []
        for pid, reason in report.retry.items():
            attempt = self._attempts.get(pid, 0) + 1
            if attempt >= self.max_attempts:
                self._attempts.pop(pid, None)
                self.store.mark_failed(pid, f"gave up after {attempt} attempts: {reason}")
            else:
                self._attempts[pid] = attempt
                requeue.append(pid)
        if requeue:
            time.sleep(self.retry_backoff_s)  # simple: this thread waits before going on
        else:
            for pid in report.encoded:
                self._attempts.pop(pid, None)
        return requeue
