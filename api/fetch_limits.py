"""The image-fetching limits the API applies, with the store's own catalogue folders readable.

A store loaded by `clik demo` or `clik index FOLDER` records the folders its images came from
(indexer.store_settings); reading them here lets the API serve those images without
CLIK_FILE_ROOTS naming them. They are read again every `refresh_s` (`clik index` may add a
folder while the API runs), and a store that cannot be read keeps the last limits.
"""

from __future__ import annotations

import time

from api.settings import ApiSettings
from clik.image_source import FetchLimits
from indexer.errors import StoreError
from indexer.store import VectorStore
from indexer.store_settings import stored_file_roots


class StoreFetchLimits:
    def __init__(self, settings: ApiSettings, store: VectorStore, refresh_s: float = 30.0) -> None:
        self.settings = settings
        self.store = store
        self.refresh_s = refresh_s
        self._limits = settings.fetch_limits()
        self._read_at = -1e9  # never: the first call reads the store

    def current(self) -> FetchLimits:
        if time.monotonic() - self._read_at > self.refresh_s:
            try:
                self._limits = self.settings.fetch_limits(stored_file_roots(self.store))
                self._read_at = time.monotonic()
            except StoreError:
                pass
        return self._limits
