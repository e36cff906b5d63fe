"""Callers hold a VectorStore, not a backend: every public method a backend offers must be
declared on the interface (indexer/store.py), or a caller that works on one backend finds it
missing on the other. `isinstance(store, VectorStore)` cannot see this; this test can."""

from __future__ import annotations

import abc

from indexer.embedded_store import EmbeddedStore
from indexer.pending import PendingSet
from indexer.redis_pending import RedisPendingSet
from indexer.redis_store import RedisStore
from indexer.store import VectorStore

BACKENDS = (RedisStore, EmbeddedStore)
# Backend-only on purpose, with why: callers reach these only through the concrete class.
BACKEND_ONLY = {
    (RedisStore, "ping"): "a Redis health probe; the embedded store has no server to reach",
    (RedisPendingSet, "keys"): "the Redis keys it writes, for tests and benchmarks that clean up",
    (RedisPendingSet, "held"): "the Redis key of one owner's leases",
}


def undeclared(interface: type, backend: type) -> set[str]:
    """Public callables defined on backend (or a base between it and the interface) that the
    interface does not declare."""
    declared = {n for n in dir(interface) if not n.startswith("_")}
    offered = set()
    for cls in backend.__mro__:
        if cls is interface or not issubclass(cls, interface):
            continue
        offered |= {n for n, v in vars(cls).items() if not n.startswith("_") and callable(v)}
    return {n for n in offered - declared if (backend, n) not in BACKEND_ONLY}


def test_every_public_backend_method_is_on_the_interface():
    for backend in BACKENDS:
        assert undeclared(VectorStore, backend) == set(), f"declare these on VectorStore: {backend.__name__}"


def test_every_public_pending_set_method_is_on_its_interface():
    # workers hold the PendingSet that store.pending_set() returns, not the Redis class
    assert undeclared(PendingSet, RedisPendingSet) == set()
    assert not getattr(RedisPendingSet, "__abstractmethods__", None)


def test_every_abstract_method_is_implemented_by_both_backends():
    for backend in BACKENDS:
        assert not getattr(backend, "__abstractmethods__", None), backend.__name__


def test_the_check_finds_a_method_missing_from_the_interface():
    class Interface(abc.ABC):
        @abc.abstractmethod
        def put_vector(self, version: str, image_hash: str, vector: object) -> None: ...

    class Backend(Interface):
        def put_vector(self, version, image_hash, vector): ...
        def put_vectors(self, version, items): ...  # used by callers, forgotten on the interface

    assert undeclared(Interface, Backend) == {"put_vectors"}
