"""The pending set's interface: products waiting to be encoded, shared by every worker.

Why it exists: the API enqueues one ``clik.encode_products`` task per ``PUT /products/{id}``.
Encoding in that task would be one forward pass per image. Instead the task only records its
products here and makes sure a drain is queued (``clik.encode_pending``); the drain runs after
the tasks already in the queue, so it finds all of them waiting and encodes full batches
(worker/ingest.py).

Why nothing is lost under late acknowledgement: an entry is written before its task returns
(and is acknowledged), and removed only after its product's result is written. A drain takes a
*lease* on the entries of its batch (owner = its task id); a drain killed mid-batch is
redelivered with the same task id and takes its own leased entries back at once, while other
drains skip them until the lease runs out. Each entry carries a token that changes with every
event, and removal is compare-and-delete: a product updated again while an older event's batch
runs keeps its entry, so the new image is encoded too.

Why leases are short and renewed: a drain SIGKILLed mid-batch must not strand its products.
A lease lasts ``lease_s`` (15 s by default) and the running drain renews it every few seconds
(worker.lease_keeper); a dead drain's lease runs out soon, and ``next_due`` tells the next drain
(or the worker's sweep, worker.tasks) when to look again.

A store offers its pending set through ``VectorStore.pending_set`` (None where the backend keeps
none). The Redis store's is ``indexer.redis_pending.RedisPendingSet`` (Lua scripts, one hash slot
on a cluster). The embedded store keeps none: it is one process on one machine, so its products
are encoded as their events arrive (inline in the task, or by the single-machine stack's
in-process queue, worker/inprocess.py), and batching across workers has nothing to gain.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

DEFAULT_LEASE_S = 15.0


class PendingSet(abc.ABC):
    lease_s: float  # how long a claim holds an entry unless renewed

    # -- producers (the encode_products task) -----------------------------------------------
    @abc.abstractmethod
    def add(self, product_ids: Sequence[str]) -> None:
        """Record an event for each product (a new token supersedes an older one); due at once
        unless a drain holds a live lease on it."""

    @abc.abstractmethod
    def claim_schedule(self, ttl_s: int) -> bool:
        """True for the one caller that should queue a drain (none is queued yet); the flag
        expires after `ttl_s` in case its drain message is ever lost."""

    # -- the drain ------------------------------------------------------------------------------
    @abc.abstractmethod
    def drain_started(self) -> None:
        """From now on a new event queues another drain (this one may already have looked)."""

    @abc.abstractmethod
    def claim(self, owner: str, limit: int) -> dict[str, str]:
        """Lease up to `limit` entries to `owner`: {product id: token}. The owner's own live
        leases first (a drain redelivered after a kill), then the entries due longest."""

    @abc.abstractmethod
    def renew(self, owner: str, product_ids: Sequence[str]) -> int:
        """Extend this owner's leases by lease_s from now; returns how many it still held."""

    @abc.abstractmethod
    def next_due(self) -> float | None:
        """None: nothing waits; 0: something can be claimed now; else seconds until a lease
        (a drain's, maybe a dead one's) or a retry delay runs out."""

    @abc.abstractmethod
    def complete(self, items: dict[str, str]) -> int:
        """Remove the entries whose token is still the one given (compare-and-delete); the
        others (updated meanwhile) lose only their lease and are due at once. Returns how many
        were removed."""

    @abc.abstractmethod
    def count_failure(self, product_id: str) -> int:
        """One more transient failure of this product; returns how many so far."""

    @abc.abstractmethod
    def postpone(self, product_id: str, delay_s: float) -> None:
        """Not due before now + delay; the lease is released for whichever drain comes then."""

    @abc.abstractmethod
    def release(self, product_ids: Sequence[str]) -> None:
        """Drop the leases (whoever holds them): the entries are due at once."""

    @abc.abstractmethod
    def count_batch(self, images: int, vectors: int) -> None:
        """Add one drained batch to the statistics (batches, images, vectors written)."""

    # -- reading ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def waiting(self, product_ids: Sequence[str]) -> dict[str, str]:
        """Those of `product_ids` that wait, with their tokens."""

    @abc.abstractmethod
    def stats(self) -> dict[str, int]:
        """The statistics count_batch added up (batches, images, vectors)."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """How many products wait."""
