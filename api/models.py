"""Loaded model sides per model version: the text side for every ranking, the image side only
for POST /rank (loaded on its first use). At most a few versions stay loaded (old + new during a
rollout); a version's bundle must hash to the version name or it is refused.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Generic, TypeVar

from api.errors import ModelUnavailable
from indexer.records import ModelVersion

M = TypeVar("M")


class ModelCache(Generic[M]):
    def __init__(self, loader: Callable[[Path], M], max_versions: int, what: str) -> None:
        self.loader = loader
        self.max_versions = max_versions
        self.what = what
        self._models: OrderedDict[str, M] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}  # one load per version at a time
        self.loads = 0

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def peek(self, name: str) -> M | None:
        with self._lock:
            return self._models.get(name)

    def get(self, version: ModelVersion) -> M:
        with self._lock:
            model = self._models.get(version.name)
            if model is not None:
                self._models.move_to_end(version.name)
                return model
            load_lock = self._loading.setdefault(version.name, threading.Lock())
        with load_lock:  # others asking for the same version wait for this one load
            model = self.peek(version.name)
            if model is not None:
                return model
            model = self._load(version)
            with self._lock:
                self._models[version.name] = model
                while len(self._models) > self.max_versions:
                    self._models.popitem(last=False)
                self._loading.pop(version.name, None)
                self.loads += 1
            return model

    def _load(self, version: ModelVersion) -> M:
        if not version.bundle_uri:
            raise ModelUnavailable(f"model version {version.name} has no bundle location")
        bundle = Path(version.bundle_uri.removeprefix("file://"))
        try:
            model = self.loader(bundle)
        except Exception as exc:  # missing files, bad config: the service cannot rank
            raise ModelUnavailable(f"cannot load the {self.what} of {version.name} from {bundle}: {exc}") from exc
        if getattr(model, "version", version.name) != version.name:
            raise ModelUnavailable(f"bundle at {bundle} is version {model.version}, "
                                   f"the store expects {version.name}")
        return model


class CpuPool:
    """Model computations run here, a few at a time, never on the event loop: concurrent
    requests queue for the cores instead of oversubscribing them."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clik-cpu")

    def run(self, fn: Callable[..., M], *args) -> M:
        return self._pool.submit(fn, *args).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
