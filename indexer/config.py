"""Typed configuration of the two backends and a factory choosing one from a URL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indexer.contracts import DEFAULT_STORE_PREFIX, is_redis_url
from indexer.store import DEFAULT_CACHE_BYTES, VectorStore

DEFAULT_EMBEDDED_PATH = Path(".clik/store")


@dataclass(frozen=True)
class EmbeddedStoreConfig:
    path: Path = DEFAULT_EMBEDDED_PATH  # a directory; holds store.sqlite3
    cache_bytes: int = DEFAULT_CACHE_BYTES  # process cache of decoded blocks
    busy_timeout_s: float = 5.0  # how long a write waits for another connection's lock


@dataclass(frozen=True)
class RedisStoreConfig:
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = DEFAULT_STORE_PREFIX  # every key starts with it: tests use a unique one and delete it
    block_ttl_s: int = 7 * 24 * 3600  # packed blocks are a cache; unread ones expire
    socket_timeout_s: float = 5.0
    cache_bytes: int = DEFAULT_CACHE_BYTES
    # How many products the catalogue change log keeps (the newest changes; an index further
    # behind rebuilds). None leaves the store's setting (100,000 unless set before).
    catalogue_log_cap: int | None = None


def open_store(url: str | None = None, prefix: str = DEFAULT_STORE_PREFIX) -> VectorStore:
    """`redis://...` -> RedisStore; a path or `file://path` -> EmbeddedStore; None -> embedded
    store in ./.clik/store (the single-machine default)."""
    if is_redis_url(url):
        from indexer.redis_store import RedisStore

        return RedisStore(RedisStoreConfig(url=url, prefix=prefix))
    from indexer.embedded_store import EmbeddedStore

    path = Path(url.removeprefix("file://")) if url else DEFAULT_EMBEDDED_PATH
    return EmbeddedStore(EmbeddedStoreConfig(path=path))
