"""Fixtures: every store test runs on both backends (real Redis, real temp directory)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from indexer.config import EmbeddedStoreConfig, RedisStoreConfig
from indexer.embedded_store import EmbeddedStore
from indexer.redis_store import RedisStore
from indexer.store import VectorStore
from tests.support.services import service_missing

REDIS_URL = "redis://127.0.0.1:6379/15"  # a database of its own, keys also under a unique prefix


def _redis_reachable() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        return f"Redis at {REDIS_URL} unreachable ({exc}); start redis-server to run these tests"
    return None


def _cleanup(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i:i + 1000])


class StoreFactory:
    """Opens stores over the same data (a second API replica / worker process)."""

    def __init__(self, kind: str, tmp_path, prefix: str) -> None:
        self.kind, self.tmp_path, self.prefix = kind, tmp_path, prefix
        self.opened: list[VectorStore] = []

    def open(self) -> VectorStore:
        if self.kind == "redis":
            store: VectorStore = RedisStore(RedisStoreConfig(url=REDIS_URL, prefix=self.prefix))
        else:
            store = EmbeddedStore(EmbeddedStoreConfig(path=self.tmp_path / "store"))
        self.opened.append(store)
        return store


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def store_factory(request, tmp_path) -> Iterator[StoreFactory]:
    prefix = f"clik-test-{uuid.uuid4().hex[:12]}:"
    if request.param == "redis":
        reason = _redis_reachable()
        if reason:
            service_missing(reason)
    factory = StoreFactory(request.param, tmp_path, prefix)
    yield factory
    for s in factory.opened:
        s.close()
    if request.param == "redis":
        _cleanup(redis.Redis.from_url(REDIS_URL), prefix)


@pytest.fixture
def store(store_factory: StoreFactory) -> VectorStore:
    return store_factory.open()


@pytest.fixture
def redis_store(tmp_path) -> Iterator[RedisStore]:
    reason = _redis_reachable()
    if reason:
        service_missing(reason)
    prefix = f"clik-test-{uuid.uuid4().hex[:12]}:"
    s = RedisStore(RedisStoreConfig(url=REDIS_URL, prefix=prefix))
    yield s
    s.close()
    _cleanup(redis.Redis.from_url(REDIS_URL), prefix)
