"""Draining the pending set in batches: pure logic over the store and its pending set
(indexer.pending).

``drain`` is what one ``clik.encode_pending`` task does: take up to ``batch_size`` waiting
products (leased to this drain), encode them together, remove the finished entries, and go on
until nothing is due. Transient fetch errors postpone the product with a growing delay; after
``max_retries`` it is marked failed. The batch's leases are renewed while it runs
(worker.lease_keeper). When nothing is claimable but entries wait under someone else's lease
(perhaps a killed drain's) or a retry delay, the returned delay says when to look again; a
drain also stops after ``max_task_s`` (delay 0: continue at once) so that no task outlives the
broker's visibility timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from clik.image_source import FetchLimits
from indexer.errors import NoActiveVersion
from indexer.store import VectorStore
from worker.encode import EncodeReport, EncoderCache, encode_products
from worker.lease_keeper import LeaseKeeper
from indexer.pending import PendingSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainOptions:
    batch_size: int = 32
    decode_threads: int = 1
    max_retries: int = 5
    retry_delay: Callable[[int], float] = lambda attempt: 2.0 * 2**attempt
    max_task_s: float = 120.0  # one drain task claims no new batch after this long


def drain(
    store: VectorStore,
    pending: PendingSet,
    owner: str,
    encoders: EncoderCache,
    limits: FetchLimits,
    options: DrainOptions = DrainOptions(),
    on_encoded: Callable[[list[str]], None] = lambda product_ids: None,
) -> tuple[EncodeReport, float | None]:
    """Encode waiting products until none is due. Returns the merged report and, when some
    product was postponed, the delay after which another drain should run. `on_encoded` hears
    each batch's newly encoded products (their exhibitions are precomputed again: tasks.py)."""
    merged = EncodeReport()
    next_in: float | None = None
    stop_at = time.monotonic() + options.max_task_s
    while True:
        if time.monotonic() > stop_at:
            return merged, 0.0  # a continuation drain takes over
        pending.drain_started()
        batch = pending.claim(owner, options.batch_size)
        if not batch:
            due = pending.next_due()  # leased elsewhere (alive or dead) or postponed
            if due is not None:
                due = max(due, 0.5)  # its lease or delay has just run out: look again shortly
                next_in = due if next_in is None else min(next_in, due)
            return merged, next_in
        try:
            with LeaseKeeper(pending, owner, list(batch)):
                report = encode_products(store, list(batch), encoders, limits, decode_threads=options.decode_threads)
        except NoActiveVersion:
            pending.release(list(batch))
            raise
        pending.complete({pid: token for pid, token in batch.items() if pid not in report.retry})
        for pid, reason in report.retry.items():
            attempts = pending.count_failure(pid)
            if attempts > options.max_retries:
                reason = f"gave up after {attempts} attempts: {reason}"
                store.mark_failed(pid, reason)
                report.failed[pid] = reason
                pending.complete({pid: batch[pid]})
            else:
                delay = options.retry_delay(attempts - 1)
                pending.postpone(pid, delay)
                next_in = delay if next_in is None else min(next_in, delay)
        report.retry = {}
        pending.count_batch(len(batch), report.new_vectors)
        if report.encoded:
            on_encoded(list(report.encoded))
        _merge(merged, report)


def _merge(into: EncodeReport, part: EncodeReport) -> None:
    into.version = part.version or into.version
    into.encoded.extend(part.encoded)
    into.new_vectors += part.new_vectors
    into.reused += part.reused
    into.failed.update(part.failed)
    into.missing.extend(part.missing)
