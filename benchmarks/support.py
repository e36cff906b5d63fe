"""What several benchmarks share: removing the keys of a benchmark's own Redis namespace, and
the API as deployed (tests/support/deployed_api.py: uvicorn subprocess, several workers)."""

from __future__ import annotations

import redis

from tests.support.deployed_api import start_api, stop, wait_ready

__all__ = ["delete_prefix", "start_api", "stop", "wait_ready"]


def delete_prefix(client: redis.Redis, prefix: str, batch: int = 10_000) -> None:
    """UNLINK every key under `prefix` (a benchmark's unique namespace), in batches."""
    keys = list(client.scan_iter(match=prefix + "*", count=batch))
    for i in range(0, len(keys), batch):
        client.unlink(*keys[i : i + batch])
