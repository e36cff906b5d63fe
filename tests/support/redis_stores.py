"""Which Redis a store test runs on: one server, or the session's three-master cluster
(fixture `redis_cluster_url`), and how its keys are cleaned up afterwards."""

from __future__ import annotations

import pytest
import redis

from tests.support.services import service_missing

REDIS_URL = "redis://127.0.0.1:6379/15"  # a database of its own, keys also under a unique prefix


def _redis_reachable() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        return f"Redis at {REDIS_URL} unreachable ({exc}); start redis-server to run these tests"
    return None


def cleanup_prefix(client, prefix: str) -> None:
    # on a cluster the keys scripts touch start with "{<prefix>", the others with the prefix
    keys = [k for pattern in (prefix + "*", "{" + prefix + "*") for k in client.scan_iter(match=pattern, count=1000)]
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])


def redis_url_for(kind: str, request) -> str:
    """The URL of the Redis the test runs on: one server, or the session's cluster."""
    if kind == "cluster":
        return request.getfixturevalue("redis_cluster_url")
    reason = _redis_reachable()
    if reason:
        service_missing(reason)
    return REDIS_URL


REDIS_KINDS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("cluster", marks=[pytest.mark.redis, pytest.mark.cluster]),
]
