"""Rendering the answers of exhibitions a worker announces precomputed, before their first read.

The worker's precompute (worker/precompute.py) leaves an exhibition's topic entry and packed
block in the store, but the first read still decoded the block, scored it, applied the rules,
rendered the JSON and wrote it to the store: ~six round trips and a few ms of CPU, 5-25x a warm
read on the benchmark box. The worker cannot render the answer itself (the ranking rules, the
answer's shape and its tag are the API's: `api` is not importable from `worker`), so it
announces what it precomputed (store.announce_precomputed) and each API process hears it here:

- the default answer (`representative?topk=1`, plain) is what product pages ask for, so that
  is the one rendered;
- of the API processes that hear the notice, the one that claims it first renders it
  (store.claim on the answer's key) and keeps it in its memory and the store; the others read
  the store's copy on their first read (one more round trip, not a computation);
- one background thread per process, so a burst of notices (a bulk load, a re-index) queues
  here instead of competing with requests for the cores.

A notice for a version that is not the active one (a re-index precomputing ahead of its
switch) renders nothing: the answer of the active version would not change.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from api.errors import ModelUnavailable, VersionMismatch
from api.ranked_answers import REPRESENTATIVE, RankingAnswers, Request
from indexer.errors import StoreError
from indexer.store import VectorStore

log = logging.getLogger(__name__)

CLAIM_TTL_S = 60  # longer than a render takes; a process that died holding it only delays one answer


class AnnouncedRenders:
    def __init__(self, answers: RankingAnswers, store: VectorStore,
                 on_result: Callable[[str], None] = lambda result: None) -> None:
        self.answers, self.store, self.on_result = answers, store, on_result
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clik-announced")
        self._stop: Callable[[], None] | None = None
        self._queued = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Listen to the store's notices (a store that cannot subscribe now: the first reads
        compute, as without this)."""
        try:
            self._stop = self.store.on_precomputed(self.heard)
        except StoreError as exc:
            log.warning("not listening to precompute notices: %s", exc)

    def heard(self, version: str, exhibition_ids: list[str]) -> None:
        with self._lock:
            self._queued += len(exhibition_ids)
        for eid in exhibition_ids:
            self._pool.submit(self._render, version, eid)

    def idle(self) -> bool:
        """Nothing heard is still waiting to be rendered (tests, benchmarks)."""
        with self._lock:
            return self._queued == 0

    def _render(self, version: str, exhibition_id: str) -> None:
        try:
            self.on_result(self._render_one(version, exhibition_id))
        except (StoreError, ModelUnavailable, RuntimeError, ValueError) as exc:  # deleted, store down...
            log.info("announced exhibition %s not rendered: %s", exhibition_id, exc)
            self.on_result("skipped")
        finally:
            with self._lock:
                self._queued -= 1

    def _render_one(self, version: str, exhibition_id: str) -> str:
        # naming the version: a notice about another version than the active one is refused
        req = Request(REPRESENTATIVE, exhibition_id, 0, 1, version, False)
        try:
            tag = self.answers.current_tag(req)
        except VersionMismatch:
            return "not_active"
        key = self.answers.memory_key(req, tag)
        if self.answers.memory.peek(key) is not None:
            return "cached"
        if not self.store.claim("render:" + key, CLAIM_TTL_S):
            return "claimed_elsewhere"
        source, _, _ = self.answers.lookup(req, tag)
        return "rendered" if source == "computed" else "cached"

    def close(self) -> None:
        if self._stop is not None:
            self._stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
