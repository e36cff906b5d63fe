"""Backend-specific behaviour: failures of the storage itself, persistence, Redis key layout."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.config import EmbeddedStoreConfig, RedisStoreConfig, open_store
from indexer.embedded_store import EmbeddedStore
from indexer.errors import InvalidVector, StoreUnavailable
from indexer.redis_store import RedisStore

DIM = 8


def test_redis_down_raises_store_unavailable():
    # port 1 on loopback: nothing listens, the connection is refused at once
    store = RedisStore(RedisStoreConfig(url="redis://127.0.0.1:1/0", prefix="x:", socket_timeout_s=0.5))
    with pytest.raises(StoreUnavailable):
        store.get_product("p")
    with pytest.raises(StoreUnavailable):
        store.rank("e", np.ones(DIM))
    with pytest.raises(StoreUnavailable):
        store.put_product("p", "src")


def test_embedded_unopenable_path_raises_store_unavailable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        EmbeddedStore(EmbeddedStoreConfig(path=blocker / "store"))


def test_embedded_closed_store_raises_store_unavailable(tmp_path):
    store = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path))
    store.close()
    with pytest.raises(StoreUnavailable):
        store.list_versions()


def test_embedded_survives_restart(tmp_path):
    store = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path))
    store.register_version("v1", DIM)
    store.activate("v1")
    store.put_product("p", "src")
    store.mark_encoded("p", "h")
    store.put_vector("v1", "h", np.ones(DIM))
    store.put_exhibition("e", {"name": "x"}, ["p"])
    store.rank("e", np.ones(DIM))
    store.close()
    again = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path))
    r = again.rank("e", np.ones(DIM))
    assert r.model_version == "v1" and [i.product_id for i in r.items] == ["p"]
    again.close()


def test_open_store_picks_backend(tmp_path):
    s = open_store(str(tmp_path / "s"))
    assert isinstance(s, EmbeddedStore)
    s.close()
    s = open_store("redis://127.0.0.1:6379/15", prefix="clik-test-open:")
    assert isinstance(s, RedisStore)
    s.close()


@pytest.mark.redis
def test_redis_drop_version_deletes_every_key_of_it(redis_store):
    s = redis_store
    s.register_version("v1", DIM, expected_vectors=1000)
    s.register_version("v2", DIM, expected_vectors=1000)
    s.activate("v2")
    rng = np.random.default_rng(0)
    for i in range(50):
        s.put_product(f"p{i}", f"src{i}")
        s.mark_encoded(f"p{i}", f"h{i}")
    s.put_vectors("v1", [(f"h{i}", rng.standard_normal(DIM)) for i in range(50)])
    s.put_vectors("v2", [(f"h{i}", rng.standard_normal(DIM)) for i in range(50)])
    s.put_exhibition("e", {}, [f"p{i}" for i in range(50)])
    s.put_topic_embedding("v1", "topic", np.ones(4))
    s.rank("e", np.ones(DIM), version="v1")
    s.rank("e", np.ones(DIM))
    vid1 = s.get_version("v1").id

    def keys_of(vid):  # records under s.core ("{prefix}" on a cluster), blocks under s.prefix
        return [
            k
            for start in {s.core, s.prefix}
            for k in s.r.scan_iter(match=start + "*", count=1000)
            if k.decode().removeprefix(start).split(":")[:2][-1] == str(vid)
        ]

    assert keys_of(vid1)
    s.drop_version("v1")
    assert keys_of(vid1) == []
    assert s.rank("e", np.ones(DIM)).total_scored == 50  # v2 untouched


@pytest.mark.redis
def test_redis_vector_layout_is_compact(redis_store):
    """Slab strings hold exactly dim*2 bytes per vector; index buckets stay listpack-encoded."""
    s = redis_store
    dim = 128
    v = s.register_version("v1", dim, expected_vectors=5000)
    rng = np.random.default_rng(0)
    for start in range(0, 5000, 1000):
        s.put_vectors("v1", [(f"h{i}", rng.standard_normal(dim)) for i in range(start, start + 1000)])
    slab0 = s._k("vs", v.id, 0)
    assert s.r.strlen(slab0) == ((1 << 20) - 16) // (dim * 2) * dim * 2
    assert s.r.memory_usage(slab0) <= (1 << 20) + 128  # one exact 1 MiB allocation
    buckets = [k for k in s.r.scan_iter(match=s._k("vi", v.id, "*"), count=1000)]
    assert buckets and all(s.r.object("encoding", k) == b"listpack" for k in buckets)


@pytest.mark.redis
def test_redis_rejects_raw_vector_of_wrong_length_without_writing(redis_store):
    s = redis_store
    v = s.register_version("v1", DIM)
    good = np.ones(DIM, dtype=np.float16).tobytes()
    with pytest.raises(InvalidVector):
        s._run("PUT_VECTORS", "v1", str(v.id), "h1", b"0" * 16, good, "h2", b"1" * 16, b"short")
    assert s.r.get(s._k("vn", v.id)) is None  # the good one was not written either


@pytest.mark.redis
def test_redis_store_from_before_the_counters_counts_coverage_by_scanning(redis_store):
    # A store written by an older version has a catalogue generation but no counters: it must
    # not start counting from zero (wrong figures), but keep counting by scanning.
    redis_store.r.set(redis_store._k("cgen"), 5)
    redis_store.register_version("v", DIM)
    for i in range(3):
        redis_store.put_product(f"p{i}", f"https://img/{i}.jpg")
        redis_store.mark_encoded(f"p{i}", f"h{i}")
    redis_store.put_vectors("v", [("h0", np.ones(DIM)), ("h1", np.ones(DIM))])
    assert redis_store.r.hget(redis_store._k("cnt"), "v") == b"0"
    cov = redis_store.coverage(["v"])
    assert (cov.products, cov.encoded, cov.covered) == (3, 3, {"v": 2})


@pytest.mark.redis
def test_a_block_written_after_its_exhibition_was_deleted_is_never_served_to_a_new_one(redis_store):
    """On a cluster the client stores a block after the script built it, so a block can land after
    its exhibition was deleted. The exhibition created again under that id starts its
    generations again; its creation number in the stamp keeps the old block from matching."""
    s = redis_store
    s.register_version("v", DIM)
    s.activate("v")
    rng = np.random.default_rng(0)
    for i in range(6):
        s.put_product(f"p{i}", f"src{i}")
        s.mark_encoded(f"p{i}", f"h{i}")
    s.put_vectors("v", [(f"h{i}", rng.standard_normal(DIM)) for i in range(6)])
    s.put_exhibition("e", {}, ["p0", "p1", "p2"])
    assert s.rank("e", np.ones(DIM)).total_scored == 3
    vid = s.get_version("v").id
    late = s.r.hgetall(s._block_key(vid, "e"))  # the block as a slow builder would write it...
    s.delete_exhibition("e")
    assert s.r.exists(s._block_key(vid, "e")) == 0
    s.r.hset(s._block_key(vid, "e"), mapping=late)  # ...after the delete
    s.put_exhibition("e", {}, ["p3", "p4", "p5"])
    s.close()  # a fresh process: nothing decoded in memory
    fresh = RedisStore(s.config)
    ranked = fresh.rank("e", np.ones(DIM))
    assert sorted(p.product_id for p in ranked.items) == ["p3", "p4", "p5"]
    fresh.close()


def test_the_catalogue_change_log_is_capped_and_says_when_it_no_longer_reaches_back(redis_store):
    store = RedisStore(RedisStoreConfig(url=redis_store.config.url, prefix=redis_store.prefix, catalogue_log_cap=3))
    start = store.catalogue_generation()
    for i in range(5):
        store.put_product(f"p{i}", f"src{i}")
    recent = store.catalogue_changes(store.catalogue_generation() - 3)
    assert recent is not None and sorted(recent.product_ids) == ["p2", "p3", "p4"]
    assert store.catalogue_changes(start) is None  # p0 and p1 were trimmed: rebuild instead
    store.close()
