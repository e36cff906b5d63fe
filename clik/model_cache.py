"""Model sides loaded per model version in one process, for every role: the API's text sides
(every ranking) and image sides (POST /rank), the workers' image encoders.

A few versions stay loaded (the old and the new one during a rollout), the least recently used
goes first. A version loads once even when many threads ask for it at the same moment, without
holding up requests for versions already loaded; a bundle must hash to the version name the
store gave, or it is refused.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, ClassVar, Generic, Protocol, TypeVar

M = TypeVar("M")


class ModelLoadError(ValueError):
    """A version's model side cannot be loaded: no bundle location, unreadable, or another version."""


class VersionRef(Protocol):
    """What the cache needs of a model version (indexer.records.ModelVersion has it). Read-only
    properties: a frozen dataclass's fields are, and the cache never writes them."""

    @property
    def name(self) -> str: ...

    @property
    def bundle_uri(self) -> str: ...


class ModelCache(Generic[M]):
    # What a failed load raises; the API raises its ModelUnavailable (HTTP 503) instead.
    unavailable: ClassVar[type[Exception]] = ModelLoadError

    def __init__(self, loader: Callable[[Path], M], max_versions: int, what: str) -> None:
        self.loader = loader  # bundle folder -> model side
        self.max_versions = max_versions
        self.what = what  # "text side", "image encoder": for messages
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

    def get(self, version: VersionRef) -> M:
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

    def _load(self, version: VersionRef) -> M:
        if not version.bundle_uri:
            raise self.unavailable(f"model version {version.name} has no bundle location")
        bundle = Path(version.bundle_uri.removeprefix("file://"))
        try:
            model = self.loader(bundle)
        except Exception as exc:  # missing files, bad config: this version cannot be used
            raise self.unavailable(f"cannot load the {self.what} of {version.name} from {bundle}: {exc}") from exc
        if getattr(model, "version", version.name) != version.name:
            raise self.unavailable(f"bundle at {bundle} is version {model.version}, the store expects {version.name}")
        return model
