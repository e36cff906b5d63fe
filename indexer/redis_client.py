"""Opening Redis for the store, the pending set and the event log: one server or a Cluster.

Why a scheme of our own: redis-py documents no URL scheme for a cluster; its
``RedisCluster.from_url`` takes the ``redis://`` (or ``rediss://``) URL of any one node and
discovers the others. A store URL ``redis+cluster://host:port/0`` (``rediss+cluster://`` for
TLS) means exactly that: the ``+cluster`` is dropped and the rest goes to ``RedisCluster``.

Why the key groups: a Lua script may only touch keys of one hash slot on a cluster, so every
key one script touches carries the same hash tag (the part of the name inside ``{...}``).
``key_group(prefix, group, cluster)`` is the start of one such group's keys: on one Redis it is
``prefix + group`` (the names stores have always had, so nothing moves), on a cluster the same
text inside braces, e.g. ``{clik:}`` (the store's records), ``{clik:ingest:}`` (the pending set),
``{clik:ev:}`` (shopper events). Each group is one slot, so one master; different groups and
different prefixes land on different masters. docs/indexer.md weighs this and measures it.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import RedisCluster

from indexer.contracts import REDIS_CLUSTER_URL_SCHEMES

# Either client: the commands the store uses have the same names and arguments on both.
RedisClient = redis.Redis | RedisCluster


def is_cluster_url(url: str | None) -> bool:
    return url is not None and url.startswith(REDIS_CLUSTER_URL_SCHEMES)


def redis_client(url: str, **options: Any) -> RedisClient:
    """A client for a store URL: RedisCluster for the ``+cluster`` schemes, else redis.Redis."""
    if is_cluster_url(url):
        # a cluster has one database (0): RedisCluster refuses any other
        return RedisCluster.from_url(url.replace("+cluster://", "://", 1), **options)
    return redis.Redis.from_url(url, **options)


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def key_group(prefix: str, group: str, cluster: bool) -> str:
    """The start of every key of one group (keys a script touches together): one hash slot."""
    return "{" + prefix + group + "}" if cluster else prefix + group
