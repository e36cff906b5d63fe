"""Shopper events over real HTTP into the real Redis Stream, counted by real `clik events`
processes: bad events refused, retries counted once, a consumer SIGKILLed mid-stream loses
nothing and counts nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from indexer.events import RedisEventLog, consume
from tests.support.api_server import ApiServer, api_settings
from tests.support.services import STORE_URL, delete_keys, redis_or_skip

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.redis


def _event(i: int, kind: str = "impression", exhibition: str = "summer") -> dict:
    return {
        "event_id": f"ev-{i}",
        "type": kind,
        "exhibition_id": exhibition,
        "product_id": f"p{i % 7}",
        "model_version": "v1",
        "position": 1 + i % 5,
        "unit": f"visitor-{i % 100}",
        "arm": "clik",
    }


@pytest.fixture()
def api():
    redis_or_skip()
    from api.app import create_app

    prefix = f"clik-evtest-{uuid.uuid4().hex[:10]}:"
    with ApiServer(create_app(api_settings(prefix, events_batch_max=500))) as server:
        yield server, prefix
    delete_keys(STORE_URL, prefix + "*")


def _expected(events: list[dict]) -> dict:
    out: dict = {}
    for e in events:
        key = (e["model_version"], e["arm"], e["product_id"], e["type"])
        out[key] = out.get(key, 0) + 1
    return out


def test_events_are_validated_hashed_and_counted_once(api):
    server, prefix = api
    http = server.client()
    events = [_event(i, "click" if i % 4 == 0 else "impression") for i in range(300)]
    r = http.post("/events", json={"events": events})
    assert r.status_code == 202 and r.json() == {"accepted": 300}
    assert http.post("/events", json={"events": events[:50]}).status_code == 202  # a client's retry

    for bad, where in [
        ({"type": "purchase"}, "type"),
        ({"product_id": "a/b"}, "product_id"),
        ({"position": 0}, "position"),
        ({"event_id": ""}, "event_id"),
    ]:
        r = http.post("/events", json={"events": [{**_event(1), **bad}]})
        assert r.status_code == 422 and where in r.text, (bad, r.text)
    assert http.post("/events", json={"events": []}).status_code == 422
    assert http.post("/events", json={"events": [_event(i) for i in range(501)]}).status_code == 422
    assert server.client(key=None).post("/events", json={"events": events[:1]}).status_code == 401

    log = RedisEventLog.from_url(STORE_URL, prefix)
    raw = log.r.xrange(log.stream, count=1)[0][1][b"e"].decode()
    assert "visitor-" not in raw and '"unit":"' in raw  # the visitor key is stored hashed
    assert consume(log, "test", batch=64, stop_after_idle=0.5) == 300
    assert log.counters("summer") == _expected(events)
    stats = log.stats()
    assert stats["counted"] == 300 and stats["duplicates"] == 50 and stats["pending"] == 0


def test_a_consumer_killed_mid_stream_loses_and_doubles_nothing(api):
    server, prefix = api
    http = server.client()
    events = [_event(i, exhibition="winter") for i in range(20_000)]
    for start in range(0, len(events), 500):
        assert http.post("/events", json={"events": events[start : start + 500]}).status_code == 202
    env = {**os.environ, "CLIK_STORE_URL": STORE_URL, "CLIK_STORE_PREFIX": prefix, "CLIK_EVENTS_CLAIM_IDLE_MS": "300"}
    cmd = [sys.executable, "-m", "clik_cli.main", "events", "--batch", "20"]
    victim = subprocess.Popen(
        cmd + ["--consumer", "victim"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    log = RedisEventLog.from_url(STORE_URL, prefix)
    deadline = time.monotonic() + 60
    while log.stats().get("counted", 0) < 2_000:  # well under way, far from done
        assert victim.poll() is None and time.monotonic() < deadline, "the consumer did not get going"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    left = log.stats()
    assert 0 < left["counted"] < 20_000
    survivor = subprocess.run(
        cmd + ["--consumer", "survivor", "--idle-exit", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert survivor.returncode == 0, survivor.stderr[-2000:]
    stats = log.stats()
    assert stats["counted"] == 20_000 and stats["duplicates"] == 0 and stats["pending"] == 0
    assert log.counters("winter") == _expected(events)


def test_the_embedded_store_counts_events_as_they_arrive(api_bundle, tmp_path):
    from api.app import create_app
    from api.settings import ApiSettings
    from indexer.config import EmbeddedStoreConfig
    from indexer.embedded_store import EmbeddedStore
    from indexer.events import EmbeddedEventLog
    from tests.support.api_server import API_KEY, InlineEncodeQueue

    store = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path / "store"))
    settings = ApiSettings(
        _env_file=None, store_url=str(tmp_path / "store"), api_keys=[API_KEY], device="cpu", preload_model=False
    )
    events = [_event(i, "click" if i % 3 == 0 else "impression") for i in range(120)]
    with ApiServer(create_app(settings, store=store, encode_queue=InlineEncodeQueue(store, tmp_path))) as server:
        http = server.client()
        assert http.post("/events", json={"events": events}).status_code == 202
        assert http.post("/events", json={"events": events[:30]}).status_code == 202  # a retry
    log = EmbeddedEventLog(tmp_path / "store")  # another process reading the same folder
    assert log.counters("summer") == _expected(events)
    assert log.stats() == {"stream_length": 120, "pending": 0, "counted": 120, "duplicates": 30}
    store.close()
