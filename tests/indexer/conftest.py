"""Fixtures: every store test runs on both backends (real Redis, real temp directory), and the
Redis backend both on one server and on a local three-master Redis Cluster (marker `cluster`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from indexer.config import EmbeddedStoreConfig, RedisStoreConfig
from indexer.embedded_store import EmbeddedStore
from indexer.redis_client import redis_client
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


def _cleanup(client, prefix: str) -> None:
    # on a cluster the keys scripts touch start with "{<prefix>", the others with the prefix
    keys = [k for pattern in (prefix + "*", "{" + prefix + "*") for k in client.scan_iter(match=pattern, count=1000)]
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i:i + 1000])


def _redis_params(kind: str, request) -> str:
    """The URL of the Redis the test runs on: one server, or the session's cluster."""
    if kind == "cluster":
        return request.getfixturevalue("redis_cluster_url")
    reason = _redis_reachable()
    if reason:
        service_missing(reason)
    return REDIS_URL


class StoreFactory:
    """Opens stores over the same data (a second API replica / worker process)."""

    def __init__(self, kind: str, tmp_path, prefix: str, url: str | None = None) -> None:
        self.kind, self.tmp_path, self.prefix, self.url = kind, tmp_path, prefix, url
        self.opened: list[VectorStore] = []

    def open(self) -> VectorStore:
        if self.url is not None:
            store: VectorStore = RedisStore(RedisStoreConfig(url=self.url, prefix=self.prefix))
        else:
            store = EmbeddedStore(EmbeddedStoreConfig(path=self.tmp_path / "store"))
        self.opened.append(store)
        return store


REDIS_KINDS = [pytest.param("redis", marks=pytest.mark.redis),
               pytest.param("cluster", marks=[pytest.mark.redis, pytest.mark.cluster])]


@pytest.fixture(params=["embedded", *REDIS_KINDS])
def store_factory(request, tmp_path) -> Iterator[StoreFactory]:
    prefix = f"clik-test-{uuid.uuid4().hex[:12]}:"
    url = None if request.param == "embedded" else _redis_params(request.param, request)
    factory = StoreFactory(request.param, tmp_path, prefix, url)
    yield factory
    for s in factory.opened:
        s.close()
    if url is not None:
        client = redis_client(url)
        _cleanup(client, prefix)
        client.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> VectorStore:
    return store_factory.open()


@pytest.fixture(params=REDIS_KINDS)
def redis_store(request, tmp_path) -> Iterator[RedisStore]:
    url = _redis_params(request.param, request)
    prefix = f"clik-test-{uuid.uuid4().hex[:12]}:"
    s = RedisStore(RedisStoreConfig(url=url, prefix=prefix))
    yield s
    s.close()
    client = redis_client(url)
    _cleanup(client, prefix)
    client.close()
