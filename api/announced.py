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
  (store.claim on the answer's key) and keeps it in its memory and the store; the others copy
  the store's bytes into their memory once it is there (looked for after 0.05, 0.2, 0.5, 1, ... 16 s:
  the winner may have a long queue of notices), so every process's first read is a memory hit;
- one background thread per process, so a burst of notices (a bulk load, a re-index) queues
  here instead of competing with requests for the cores.

A notice for a version that is not the active one (a re-index precomputing ahead of its
switch) renders nothing: the answer of the active version would not change.
"""

from __future__ import annotations

import logging
import sched
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from api.errors import ModelUnavailable, VersionMismatch
from api.ranked_answers import REPRESENTATIVE, RankingAnswers, Request
from indexer.errors import StoreError
from indexer.store import VectorStore

log = logging.getLogger(__name__)

CLAIM_TTL_S = 60  # longer than a render takes; a process that died holding it only delays one answer
COPY_AFTER_S = (0.05, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # a lost claim: when to look for the winner's bytes


class AnnouncedRenders:
    def __init__(
        self, answers: RankingAnswers, store: VectorStore, on_result: Callable[[str], None] = lambda result: None
    ) -> None:
        self.answers, self.store, self.on_result = answers, store, on_result
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clik-announced")
        self._stop: Callable[[], None] | None = None
        # copies of answers other processes render: a scheduler, so that a copy waiting 16 s
        # does not hold up one due now
        self._copies = sched.scheduler(time.monotonic, time.sleep)
        self._wake = threading.Event()
        self._closed = False

    def start(self) -> None:
        """Listen to the store's notices (a store that cannot subscribe now: the first reads
        compute, as without this)."""
        try:
            self._stop = self.store.on_precomputed(self.heard)
        except StoreError as exc:
            log.warning("not listening to precompute notices: %s", exc)
            return
        threading.Thread(target=self._copy_loop, name="clik-announced-copies", daemon=True).start()

    def heard(self, version: str, exhibition_ids: list[str]) -> None:
        for eid in exhibition_ids:
            self._pool.submit(self._render, version, eid)

    def _render(self, version: str, exhibition_id: str) -> None:
        try:
            self.on_result(self._render_one(version, exhibition_id))
        except (StoreError, ModelUnavailable, RuntimeError, ValueError) as exc:  # deleted, store down...
            log.info("announced exhibition %s not rendered: %s", exhibition_id, exc)
            self.on_result("skipped")

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
            self._copy_later(key, 0)
            return "claimed_elsewhere"
        source, _, _ = self.answers.lookup(req, tag)
        return "rendered" if source == "computed" else "cached"

    def _copy_later(self, key: str, attempt: int) -> None:
        if attempt < len(COPY_AFTER_S) and not self._closed:
            self._copies.enter(COPY_AFTER_S[attempt], 0, self._copy, (key, attempt))
            self._wake.set()

    def _copy(self, key: str, attempt: int) -> None:
        if self._closed:
            return
        try:
            body = self.store.get_answer(key)
        except StoreError as exc:
            log.info("rendered answer %s not copied: %s", key, exc)
            return
        if body is None:
            self._copy_later(key, attempt + 1)  # not rendered yet (or never: the first read will)
            return
        self.answers.memory.put(key, body)
        self.on_result("copied")

    def _copy_loop(self) -> None:
        while not self._closed:
            self._copies.run()  # until none is left; copies entered meanwhile are run too
            self._wake.wait(1.0)
            self._wake.clear()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._stop is not None:
            self._stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
