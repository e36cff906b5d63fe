"""Fixtures: every store test runs on both backends (real Redis, real temp directory), and the
Redis backend both on one server and on a local three-master Redis Cluster (marker `cluster`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from indexer.config import EmbeddedStoreConfig, RedisStoreConfig
from indexer.embedded_store import EmbeddedStore
from indexer.redis_client import redis_client
from indexer.redis_store import RedisStore
from indexer.store import VectorStore
from tests.support.redis_stores import REDIS_KINDS, cleanup_prefix, redis_url_for


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


@pytest.fixture(params=["embedded", *REDIS_KINDS])
def store_factory(request, tmp_path) -> Iterator[StoreFactory]:
    prefix = f"clik-test-{uuid.uuid4().hex[:12]}:"
    url = None if request.param == "embedded" else redis_url_for(request.param, request)
    factory = StoreFactory(request.param, tmp_path, prefix, url)
    yield factory
    for s in factory.opened:
        s.close()
    if url is not None:
        client = redis_client(url)
        cleanup_prefix(client, prefix)
        client.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> VectorStore:
    return store_factory.open()


@pytest.fixture(params=REDIS_KINDS)
def redis_store(request, tmp_path) -> Iterator[RedisStore]:
    url = redis_url_for(request.param, request)
    prefix = f"clik-test-{uuid.uuid4().hex[:12]}:"
    s = RedisStore(RedisStoreConfig(url=url, prefix=prefix))
    yield s
    s.close()
    client = redis_client(url)
    cleanup_prefix(client, prefix)
    client.close()
