"""The pending set's claim semantics on a real Redis and on a real three-master Redis Cluster:
leases, a redelivered drain taking its own leases back, compare-and-delete, postponing, the
order of claims, next_due, and entries written in the layout before the sorted set."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from indexer.redis_client import redis_client
from tests.support.services import service_missing
from indexer.redis_pending import RedisPendingSet

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=[pytest.mark.redis, pytest.mark.cluster]),
    ]
)
def client(request):
    if request.param == "cluster":
        url = request.getfixturevalue("redis_cluster_url")
    else:
        url = REDIS_URL
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        except redis.RedisError as exc:
            service_missing(f"Redis at {url} unreachable ({exc})")
    c = redis_client(url)
    yield c
    c.close()


@pytest.fixture
def make(client):
    prefix = f"clik-test-{uuid.uuid4().hex[:12]}:"
    made: list[RedisPendingSet] = []

    def make(lease_s: float = 15.0) -> RedisPendingSet:
        made.append(RedisPendingSet(client, prefix, lease_s=lease_s))
        return made[-1]

    yield make
    for p in made[:1]:
        client.delete(*p.keys())
        for key in list(client.scan_iter(match=getattr(p, "base", prefix) + "held:*")):
            client.delete(key)


def test_a_lease_keeps_other_drains_off_until_it_runs_out(make):
    pending = make(lease_s=0.4)
    pending.add(["a", "b", "c"])
    assert set(pending.claim("drain-1", 10)) == {"a", "b", "c"}
    assert pending.claim("drain-2", 10) == {}
    assert 0 < pending.next_due() <= 0.4
    time.sleep(0.5)  # drain-1 died: nothing renewed its lease
    assert set(pending.claim("drain-2", 10)) == {"a", "b", "c"}


def test_renewing_keeps_the_batch(make):
    pending = make(lease_s=0.4)
    pending.add(["a", "b"])
    pending.claim("drain-1", 10)
    for _ in range(3):
        time.sleep(0.2)
        assert pending.renew("drain-1", ["a", "b"]) == 2
    assert pending.claim("drain-2", 10) == {}
    assert pending.renew("drain-2", ["a", "b"]) == 0  # not its leases


def test_a_redelivered_drain_takes_its_own_leases_back_at_once(make):
    pending = make()
    pending.add(["a", "b", "c"])
    first = pending.claim("task-1", 2)
    assert len(first) == 2
    again = pending.claim("task-1", 5)  # the same task id after a kill: its two, then the rest
    assert set(again) == {"a", "b", "c"} and all(again[p] == t for p, t in first.items())
    assert pending.claim("task-2", 5) == {}


def test_complete_removes_only_unchanged_entries_and_an_updated_one_is_due_at_once(make):
    pending = make()
    pending.add(["a", "b"])
    batch = pending.claim("drain-1", 10)
    pending.add(["b"])  # b's image changed while the batch ran: a new token
    assert pending.claim("drain-2", 10) == {}  # b is still leased to drain-1
    assert pending.complete(batch) == 1
    assert len(pending) == 1 and pending.next_due() == 0
    again = pending.claim("drain-2", 10)
    assert list(again) == ["b"] and again["b"] != batch["b"]
    assert pending.complete(again) == 1 and len(pending) == 0 and pending.next_due() is None


def test_a_postponed_entry_waits_for_its_delay_and_release_frees_at_once(make):
    pending = make()
    pending.add(["a", "b"])
    pending.claim("drain-1", 10)
    pending.postpone("a", 0.3)
    pending.release(["b"])
    assert list(pending.claim("drain-2", 10)) == ["b"]
    assert 0 < pending.next_due() <= 15.0
    pending.complete({"b": pending.waiting(["b"])["b"]})
    assert 0 < pending.next_due() <= 0.3
    time.sleep(0.35)
    assert pending.next_due() == 0 and list(pending.claim("drain-2", 10)) == ["a"]


def test_a_new_event_makes_a_postponed_entry_due_at_once(make):
    pending = make()
    pending.add(["a"])
    pending.claim("drain-1", 1)
    pending.count_failure("a")
    pending.postpone("a", 60)
    assert pending.claim("drain-2", 1) == {}
    pending.add(["a"])
    assert list(pending.claim("drain-2", 1)) == ["a"]


def test_entries_are_claimed_in_the_order_they_became_due(make):
    """The oldest events first (the scan claimed in hash order): a product whose retry delay
    ran out goes before newer events, and a backlog drains first in, first out. 1,000 entries: more
    than a small (listpack) hash holds (512 entries on this Redis), whose scan keeps insertion order."""
    pending = make()
    for i in range(1000):
        pending.add([f"p{i:03d}"])
        if i % 10 == 0:
            time.sleep(0.002)  # due times are milliseconds; ties go by product id
    order = []
    while batch := pending.claim("drain", 64):
        order += list(batch)
        pending.complete(batch)
    assert order == [f"p{i:03d}" for i in range(1000)]


def test_entries_written_in_the_layout_before_the_sorted_set_are_claimed(make, client):
    """A pending set written by a worker from before the sorted set (hash entries, leases and
    retry times in hashes, no due scores) is picked up as it was: free entries at once, a live
    lease (until it runs out) and a retry time respected."""
    pending = make()
    now = int(time.time() * 1000)
    client.hset(pending.pending, mapping={"free": "1", "leased": "2", "later": "3"})
    client.hset(pending.lease, "leased", f"old-drain|{now + 60_000}")
    client.hset(pending.retry_at, "later", now + 60_000)
    assert pending.next_due() == 0
    assert pending.claim("drain", 10) == {"free": "1"}
    assert pending.complete({"free": "1"}) == 1
    assert 50 < pending.next_due() <= 60
    assert pending.claim("another-drain", 10) == {}  # the old drain's lease holds until it runs out
    assert client.exists(pending.retry_at) == 0
