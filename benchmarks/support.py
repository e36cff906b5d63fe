"""What several benchmarks share: removing the keys of a benchmark's own Redis namespace."""

from __future__ import annotations

import redis


def delete_prefix(client: redis.Redis, prefix: str, batch: int = 10_000) -> None:
    """UNLINK every key under `prefix` (a benchmark's unique namespace), in batches."""
    keys = list(client.scan_iter(match=prefix + "*", count=batch))
    for i in range(0, len(keys), batch):
        client.unlink(*keys[i : i + batch])
