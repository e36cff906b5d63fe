"""GET /products/{id}/image off the request threadpool: origin fetches in their own few threads.

Why: the route fetches the product's image from its origin. Run in the shared request pool
(40 threads), 45 requests for a slow origin took every thread and /healthz waited 36.8 s.
Here at most ``concurrency`` fetches run at once in a dedicated pool; up to ``queue`` more
requests wait (on the event loop, costing no thread) at most ``wait_s`` for a slot; beyond that
the answer is 503 with Retry-After at once. Each fetch is bounded by the fetch deadline
(clik.http_fetch), so a slot always comes free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class ProxyBusy(Exception):
    """Every fetch slot is taken and the wait queue is full (or the wait ran out)."""


class ImageProxy:
    def __init__(self, concurrency: int, queue: int, wait_s: float) -> None:
        self.concurrency, self.queue, self.wait_s = concurrency, queue, wait_s
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="clik-image-proxy")
        self._slots: asyncio.Semaphore | None = None  # made on the serving loop, on first use
        self._admitted = 0  # running + waiting (only touched on the event loop)

    async def run(self, fn: Callable[..., T], *args) -> T:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        if self._admitted >= self.concurrency + self.queue:
            raise ProxyBusy()
        self._admitted += 1
        try:
            try:
                await asyncio.wait_for(self._slots.acquire(), self.wait_s)
            except TimeoutError:  # asyncio.TimeoutError is this since 3.11
                raise ProxyBusy() from None
            try:
                return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
            finally:
                self._slots.release()
        finally:
            self._admitted -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
