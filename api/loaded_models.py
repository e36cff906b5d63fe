"""What the API process holds to compute with models: the model sides loaded per version (the
text side for every ranking, the image side only for POST /rank, loaded on its first use) and
the few threads those computations run on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from api.errors import ModelUnavailable
from clik.model_cache import ModelCache as _ModelCache

M = TypeVar("M")


class ModelCache(_ModelCache[M]):
    """clik.model_cache.ModelCache whose failed loads answer 503 (ModelUnavailable)."""

    unavailable = ModelUnavailable


class CpuPool:
    """Model computations run here, a few at a time, never on the event loop: concurrent
    requests queue for the cores instead of oversubscribing them."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clik-cpu")

    def run(self, fn: Callable[..., M], *args) -> M:
        return self._pool.submit(fn, *args).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
