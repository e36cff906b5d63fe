"""Which store a process opens: ``CLIK_STORE_URL`` and ``CLIK_STORE_PREFIX``, one mixin for every
role. The default URL differs by role, on purpose, and is decided here only:

| role | default store | why |
| --- | --- | --- |
| API (`clik serve` in a deployment), workers | `redis://127.0.0.1:6379/0` | processes that scale out share one Redis |
| the CLI's commands (`clik models`, `clik index`, ...) | the embedded store in `./.clik/store` | one machine, no services to start |

A role's settings class keeps the service default or sets ``store_url`` to ``CLI_STORE_URL``.
"""

from __future__ import annotations

from pydantic import BaseModel

from indexer.config import open_store
from indexer.contracts import DEFAULT_STORE_PREFIX
from indexer.store import VectorStore

SERVICE_STORE_URL = "redis://127.0.0.1:6379/0"  # the API and the workers
CLI_STORE_URL: str | None = None  # the CLI: None is open_store's embedded default, ./.clik/store


class StoreSettings(BaseModel):
    """Mixed into pydantic-settings classes: ``CLIK_STORE_URL`` (a redis:// URL, or a folder or
    file:// path of the embedded store) and ``CLIK_STORE_PREFIX`` (the Redis key prefix)."""

    store_url: str | None = SERVICE_STORE_URL
    store_prefix: str = DEFAULT_STORE_PREFIX

    def open_store(self, url: str | None = None) -> VectorStore:
        """The store these settings name; ``url`` (a --store flag) wins over CLIK_STORE_URL."""
        return open_store(url or self.store_url, prefix=self.store_prefix)
