"""RedisStore's warm-answer reads on a redis.asyncio connection (see indexer/async_reads.py).

The same commands as RedisStore.block_stamp and get_answer (the CHECK_BLOCK script by EVALSHA
and the job records, pipelined), the same error translation; only the connection is an asyncio
one, opened on the loop that first uses it. One Redis only: a cluster's records and scripts
live on several nodes (RedisStore.async_reads gives the threaded reads there).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis
import redis.asyncio as aioredis

from indexer.async_reads import ThreadedReads
from indexer.redis_store import RedisStore, _translated_errors


class RedisAsyncReads(ThreadedReads):
    def __init__(self, store: RedisStore) -> None:
        super().__init__(store)
        self.redis_store = store
        config = store.config
        self.client = aioredis.Redis.from_url(
            config.url, socket_timeout=config.socket_timeout_s, socket_connect_timeout=config.socket_timeout_s
        )

    async def block_stamp(self, exhibition_id: str, job_ids: Sequence[str] = ()) -> tuple[str, str, list[dict | None]]:
        s = self.redis_store
        script = s._scripts["CHECK_BLOCK"]
        with _translated_errors():
            for attempt in (0, 1):
                pipe = self.client.pipeline(transaction=False)
                pipe.evalsha(script.sha, len(s._route), *s._route, s.core, exhibition_id, "")
                for job_id in job_ids:
                    pipe.get(s._job_key(job_id))
                try:
                    found = await pipe.execute()
                    break
                except redis.exceptions.NoScriptError:  # a restarted or flushed server
                    if attempt:
                        raise
                    await self.client.script_load(script.script)
        name, _, stamp = (x.decode() for x in found[0])
        return name, stamp, [json.loads(raw) if raw else None for raw in found[1:]]

    async def get_answer(self, key: str) -> bytes | None:
        with _translated_errors():
            raw = await self.client.get(self.redis_store._k("ans", key))
        return raw if isinstance(raw, bytes) or raw is None else str(raw).encode()

    async def aclose(self) -> None:
        await self.client.aclose()
