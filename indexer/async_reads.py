"""The two reads of a warm ranking answer, for code running on an event loop.

A warm answer costs one read of the block stamp (with the overrides record) and, when the
process does not hold the answer's bytes, one read of the store's copy. The API answers those
requests on its event loop (api/hot_answers.py) because a hop into the request threadpool and
FastAPI's dependency solving cost more CPU than the whole answer (py-spy of the warm path:
~0.3 ms of CPU per thread hop on the 2 shared cores, against ~0.13 ms for the Redis call).

`ThreadedReads` runs a store's own (blocking) methods in a thread: any backend. The Redis store
gives `RedisAsyncReads` instead (indexer/redis_async.py), the same reads on a redis.asyncio
connection: no thread at all. Whoever opens one closes it (`aclose`) on the loop it ran on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store module imports this one
    from indexer.store import VectorStore


class ThreadedReads:
    def __init__(self, store: VectorStore) -> None:
        self.store = store

    async def block_stamp(self, exhibition_id: str, job_ids: Sequence[str] = ()) -> tuple[str, str, list[dict | None]]:
        """store.block_stamp: (active version, stamp, job records); raises what it raises."""
        return await asyncio.to_thread(self.store.block_stamp, exhibition_id, job_ids)

    async def get_answer(self, key: str) -> bytes | None:
        """store.get_answer."""
        return await asyncio.to_thread(self.store.get_answer, key)

    async def aclose(self) -> None:
        return None
