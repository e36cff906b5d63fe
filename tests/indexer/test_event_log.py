"""The Redis event log on one Redis and on a three-master cluster: its script touches the stream,
the seen-markers and the counters together, so they share one hash tag there."""

from __future__ import annotations

import uuid

import pytest

from indexer.events import RedisEventLog
from indexer.redis_client import redis_client
from tests.support.redis_stores import REDIS_KINDS, cleanup_prefix, redis_url_for


@pytest.fixture(params=REDIS_KINDS)
def log(request):
    url = redis_url_for(request.param, request)
    prefix = f"clik-test-{uuid.uuid4().hex[:12]}:"
    client = redis_client(url)
    yield RedisEventLog(client, prefix)
    cleanup_prefix(client, prefix)
    client.close()


def test_events_are_counted_once_per_event_id_and_acknowledged(log):
    base = {"type": "click", "exhibition_id": "e1", "product_id": "p1", "model_version": "v", "arm": ""}
    log.append([{**base, "event_id": "a"}, {**base, "event_id": "a"}, {**base, "event_id": "b", "exhibition_id": "e2"}])
    entries = log.read("consumer-1", count=10, block_ms=100)
    assert len(entries) == 3
    assert log.commit(entries) == 2
    assert log.counters("e1") == {("v", "", "p1", "click"): 1}
    assert log.counters("e2") == {("v", "", "p1", "click"): 1}
    stats = log.stats()
    assert stats["pending"] == 0 and stats["counted"] == 2 and stats["duplicates"] == 1
