"""Names the processes agree on: Celery task names, the default queue, the store's key prefix,
which URLs mean Redis. One home for them (docs/architecture.md, "Contracts between processes").

It lives in indexer/ because every role imports indexer/ and indexer/ imports nothing of this
repository: the API sends tasks by name without importing worker/, and the worker, the API and
the CLI must agree on these strings, or a task is sent where nobody listens.
"""

from __future__ import annotations

from typing import TypeGuard

# Celery tasks (worker/tasks.py registers them; api/ and clik_cli/ send them by name).
ENCODE_PRODUCTS = "clik.encode_products"  # args: [product_ids]
ENCODE_PENDING = "clik.encode_pending"  # the pending-set drain (Redis store only)
REINDEX = "clik.reindex"  # args: [version, bundle_uri?]; kwargs retry_skipped, token, wait_s: the coordinator
REINDEX_CHUNK = "clik.reindex_chunk"  # args: [version, chunk_id, [[hash, source], ...]]
DROP_PREVIOUS_VERSION = "clik.drop_previous_version"  # args: [version]
# args: [exhibition_ids], kwargs version: their topic entries and packed blocks, before a read
PRECOMPUTE_EXHIBITIONS = "clik.precompute_exhibitions"
TASK_NAMES = (ENCODE_PRODUCTS, ENCODE_PENDING, REINDEX, REINDEX_CHUNK, DROP_PREVIOUS_VERSION, PRECOMPUTE_EXHIBITIONS)

DEFAULT_QUEUE = "clik"  # CLIK_QUEUE: the queue every task is routed to
DEFAULT_STORE_PREFIX = "clik:"  # CLIK_STORE_PREFIX: every store key starts with it

# URL schemes of the Redis client (redis-py's from_url): a store or broker URL with one of them
# is Redis; a store URL without is a path of the embedded store, a broker URL e.g. amqp://.
# The "+cluster" schemes are CLIK's own (redis-py documents none for a cluster): a store on a
# Redis Cluster, opened with redis-py's RedisCluster from any one node (indexer/redis_client.py).
# Store URLs only: Celery's broker cannot use a cluster.
REDIS_CLUSTER_URL_SCHEMES = ("redis+cluster://", "rediss+cluster://")
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://", *REDIS_CLUSTER_URL_SCHEMES)


def is_redis_url(url: str | None) -> TypeGuard[str]:  # True: a str (for type checkers)
    return url is not None and url.startswith(REDIS_URL_SCHEMES)
