"""After an exhibition is written: its topic query and packed block made before its first read.

Where the results live decides who does the work. Both live in the store, shared by every API
process (the topic entry in the store's topic cache, the packed block beside its stamp), so on
the Redis deployment one Celery worker computes them (``clik.precompute_exhibitions``,
worker/precompute.py) and every API process's first read finds them: no process pays for the
text tower on a read, and no API process spends its own CPU on a write it did not serve.

An encode queue without ``precompute`` (the embedded stack: one API process, no workers) warms
this process instead, in one background thread: the default answer (topk=1) is computed and
rendered, which also leaves the topic entry and block in the store and in this process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from api.errors import ModelUnavailable, QueueUnavailable, VersionMismatch
from api.ranked_answers import REPRESENTATIVE, RankingAnswers, Request
from indexer.errors import StoreError

log = logging.getLogger(__name__)


class Precompute:
    def __init__(
        self,
        answers: RankingAnswers,
        send: Callable[[list[str]], None] | None,
        on_result: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.answers, self.send, self.on_result = answers, send, on_result
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future] = set()
        self._lock = threading.Lock()

    def exhibition_written(self, exhibition_id: str) -> None:
        """Never fails the write: without its precompute the first read computes, as before."""
        if self.send is not None:
            try:
                self.send([exhibition_id])
                self.on_result("sent")
            except QueueUnavailable as exc:
                log.warning("precompute of exhibition %s not sent: %s", exhibition_id, exc)
                self.on_result("not_sent")
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clik-precompute")
            future = self._pool.submit(self._warm, exhibition_id)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def _warm(self, exhibition_id: str) -> None:
        req = Request(REPRESENTATIVE, exhibition_id, 0, 1, None, False)
        try:
            self.answers.body(req, self.answers.current_tag(req))
            self.on_result("warmed")
        except (StoreError, ModelUnavailable, VersionMismatch, RuntimeError, ValueError) as exc:  # deleted, no model...
            log.info("precompute of exhibition %s skipped: %s", exhibition_id, exc)
            self.on_result("skipped")

    def join(self, timeout_s: float = 30.0) -> bool:
        """Wait for the local warm-ups queued so far (tests, `clik demo`); False on timeout."""
        with self._lock:
            pending = list(self._pending)
        from concurrent.futures import wait

        return not wait(pending, timeout=timeout_s).not_done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
