"""Loading a version's text side in the background (start-up, readiness), and freezing the heap.

Why in the background: a readiness probe or the start-up must not wait the seconds a text tower
takes to load; /readyz reports "not loaded yet" (or the load's error) meanwhile. Why gc.freeze:
what lives once the models are loaded (modules, weights) never dies, and freezing it keeps every
later collection from walking it again.
"""

from __future__ import annotations

import gc
import threading

from api.loaded_models import ModelCache
from clik.encoders import TopicEncoder
from indexer.records import ModelVersion


class BackgroundLoader:
    def __init__(self, text: ModelCache[TopicEncoder], gc_freeze: bool) -> None:
        self.text = text
        self.gc_freeze = gc_freeze
        self.errors: dict[str, str] = {}  # version -> why its background load failed
        self._loading: set[str] = set()
        self._lock = threading.Lock()

    def load(self, version: ModelVersion) -> None:
        """Start loading the version's text side without waiting for it (once at a time)."""
        with self._lock:
            if version.name in self._loading:
                return
            self._loading.add(version.name)

        def run() -> None:
            try:
                self.text.get(version)
                self.errors.pop(version.name, None)
                self.freeze_heap()
            except Exception as exc:
                self.errors[version.name] = str(exc)
            finally:
                with self._lock:
                    self._loading.discard(version.name)

        threading.Thread(target=run, name=f"clik-load-{version.name[:12]}", daemon=True).start()

    def freeze_heap(self) -> None:
        """gc.freeze() what lives now (modules, models): later collections skip it."""
        if self.gc_freeze:
            gc.collect()
            gc.freeze()
