"""What a test does when a service it needs (Redis) is not there: skip on a laptop, fail in CI.

scripts/test.sh starts Redis and sets CLIK_REQUIRE_SERVICES=1, so a CI run where Redis did not
come up fails loudly instead of passing with half the suite skipped.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_ENV = "CLIK_REQUIRE_SERVICES"


def service_missing(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set: this run needs it)", pytrace=False)
    pytest.skip(reason)


# The Redis databases and RabbitMQ vhost the tests use (each test adds its own prefix or queue).
STORE_URL = "redis://127.0.0.1:6379/15"
BROKER_URL = "redis://127.0.0.1:6379/13"  # also Celery's result backend
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def redis_or_skip(url: str = STORE_URL) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis unreachable ({exc})")


def amqp_unreachable() -> str | None:
    """Why RabbitMQ cannot be used, or None when it answers."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError as exc:
        return f"RabbitMQ unreachable ({exc})"
    return None


def delete_keys(target, pattern: str) -> None:
    """Delete the keys matching pattern; target is a Redis URL or a client."""
    import redis

    client = redis.Redis.from_url(target) if isinstance(target, str) else target
    keys = list(client.scan_iter(match=pattern, count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])
