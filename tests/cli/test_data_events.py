"""Logged events to a training dataset, through the real commands: events posted over HTTP,
`clik events --days` (a real consumer on the real Redis) writing day files, `clik data events`
turning them into a clik-dataset/1 with the smoothed `ctr` criterion; the same on the embedded
store from its own log. Retried events and day-file lines written twice count once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from indexer.day_files import DayFiles, read_days
from tests.support.api_server import ApiServer, api_settings
from tests.support.services import STORE_URL, delete_keys, redis_or_skip
from tests.support.worker_harness import ROOT
from training.data.format import load_dataset

# (exhibition, product): (impressions, clicks)
TRAFFIC = {
    ("e1", "a"): (40, 8),
    ("e1", "b"): (20, 1),
    ("e1", "c"): (3, 3),  # c: too few impressions
    ("e2", "a"): (30, 0),
    ("e2", "d"): (2, 0),
}  # e2 keeps one product: dropped


def _events() -> list[dict]:
    out = []
    for (ex, pid), (n, c) in TRAFFIC.items():
        for i in range(n):
            common = {
                "exhibition_id": ex,
                "product_id": pid,
                "arm": "x:clik",
                "request_id": f"{ex}-{pid}-{i}",
                "timestamp": 1_780_000_000.0 + i * 3600,
            }  # spread over two UTC days
            out.append({"event_id": f"{ex}-{pid}-i{i}", "type": "impression", "propensity": 1.0, **common})
            if i < c:
                out.append({"event_id": f"{ex}-{pid}-c{i}", "type": "click", **common})
    return out


def _store(store) -> None:
    for pid in "abcd":
        store.put_product(pid, f"https://img.example/{pid}.jpg")
    store.put_exhibition("e1", {"name": "Linen shirts", "cat1": "Men"}, ["a", "b", "c"])
    store.put_exhibition("e2", {"name": "Wool coats"}, ["a", "d"])


def _check(out: Path) -> None:
    dataset = load_dataset(out)
    assert dataset.default_criterion == "ctr" and [e.id for e in dataset.exhibitions] == ["e1"]
    total_n = sum(n for n, _ in TRAFFIC.values())
    total_c = sum(c for _, c in TRAFFIC.values())
    g = total_c / total_n  # 12 / 95
    assert dataset.meta["global_ctr"] == pytest.approx(g) and dataset.meta["impressions"] == total_n
    ex = dataset.exhibitions[0]
    assert ex.topic["name"] == "Linen shirts" and ex.split == "train"
    labels = {p.id: p.criteria for p in ex.products}
    assert set(labels) == {"a", "b"}
    assert labels["a"]["ctr"] == pytest.approx((8 + 10 * g) / (40 + 10))
    assert labels["b"]["ctr"] == pytest.approx((1 + 10 * g) / (20 + 10))
    assert labels["a"]["impressions"] == 40 and labels["a"]["clicks"] == 8
    assert {p.id: p.image for p in ex.products}["a"] == "https://img.example/a.jpg"


def _data_events(env: dict, out: Path, *extra: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "clik_cli.main",
        "data",
        "events",
        str(out),
        "--min-impressions",
        "5",
        "--smoothing",
        "10",
        "--test-frac",
        "0",
        *extra,
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr
    assert "1 exhibitions" in done.stdout


@pytest.mark.redis
def test_day_files_from_the_consumer_become_a_ctr_dataset(tmp_path):
    redis_or_skip()
    from api.app import create_app
    from indexer.config import open_store

    prefix = f"clik-dataev-{uuid.uuid4().hex[:10]}:"
    store = open_store(STORE_URL, prefix=prefix)
    _store(store)
    events = _events()
    try:
        with ApiServer(create_app(api_settings(prefix))) as server:
            http = server.client()
            assert http.post("/events", json={"events": events}).status_code == 202
            assert http.post("/events", json={"events": events[:30]}).status_code == 202  # a client's retry
        env = {**os.environ, "CLIK_STORE_URL": STORE_URL, "CLIK_STORE_PREFIX": prefix}
        days = tmp_path / "days"
        consumer = subprocess.run(
            [sys.executable, "-m", "clik_cli.main", "events", "--days", str(days), "--idle-exit", "1", "--batch", "50"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert consumer.returncode == 0, consumer.stderr
        files = sorted(p.name for p in days.iterdir())
        assert files == ["events-2026-05-28.jsonl", "events-2026-05-29.jsonl", "events-2026-05-30.jsonl"]
        lines = sum(len(p.read_text().splitlines()) for p in days.iterdir())
        assert lines == len(events) + 30  # the retry is in the stream twice; the files keep what came
        logged = list(read_days(days))
        assert len(logged) == len(events) and all("unit" not in e for e in logged)
        DayFiles(days).append(logged[:100])  # a batch written again (a consumer killed before its ack)
        assert len(list(read_days(days))) == len(events)
        _data_events(env, tmp_path / "ds", "--days", str(days))
        _check(tmp_path / "ds")
        # the counters give the same labels (no day files)
        _data_events(env, tmp_path / "ds2")
        _check(tmp_path / "ds2")
    finally:
        store.close()
        delete_keys(STORE_URL, prefix + "*")


def test_the_embedded_log_becomes_a_ctr_dataset(tmp_path):
    from api.app import create_app
    from indexer.config import open_store

    path = tmp_path / "store"
    store = open_store(str(path))
    _store(store)
    events = _events()
    with ApiServer(create_app(api_settings("clik:", store_url=str(path)), store=store)) as server:
        http = server.client()
        assert http.post("/events", json={"events": events}).status_code == 202
        assert http.post("/events", json={"events": events[:30]}).status_code == 202
    store.close()
    _data_events({**os.environ, "CLIK_STORE_URL": str(path)}, tmp_path / "ds")
    _check(tmp_path / "ds")


def test_with_labels_adds_the_original_train_exhibitions_beside_the_ctr_labels(tmp_path):
    """The retraining cycle's dataset: the logged CTR labels plus the train exhibitions of the
    dataset the served model learnt from, under one `engagement` criterion; an exhibition in both
    keeps its original labels, the original's test exhibitions and off-topic flags as they were."""
    from api.app import create_app
    from indexer.config import open_store
    from training.data.format import Dataset, Exhibition, Product, write_dataset

    original = tmp_path / "sales"
    (original / "images").mkdir(parents=True)
    write_dataset(
        Dataset(
            "sales-v1",
            ["sales"],
            "sales",
            "test",
            [
                Exhibition(
                    "e1",
                    "shirts",
                    "train",
                    {"name": "Linen shirts"},
                    [
                        Product("a", "images/a.jpg", {"sales": 3.0}),
                        Product("b", "images/b.jpg", {"sales": 9.0}),
                        Product("z", "images/z.jpg", {"sales": 1.0}, on_topic=False),
                    ],
                ),
                Exhibition(
                    "orig",
                    "coats",
                    "train",
                    {"name": "Wool coats"},
                    [Product("c", "images/c.jpg", {"sales": 5.0}), Product("d", "images/d.jpg", {"sales": 2.0})],
                ),
                Exhibition(
                    "kept-for-eval",
                    "bags",
                    "test",
                    {"name": "Bags"},
                    [Product("x", "images/x.jpg", {"sales": 1.0}), Product("y", "images/y.jpg", {"sales": 4.0})],
                ),
            ],
        ),
        original,
    )
    path = tmp_path / "store"
    store = open_store(str(path))
    _store(store)
    store.put_exhibition("e3", {"name": "Summer hats"}, ["a", "b"])
    events = _events() + [
        {**e, "exhibition_id": "e3", "event_id": "e3-" + e["event_id"]}
        for e in _events()
        if e["exhibition_id"] == "e1" and e["product_id"] in "ab"
    ]
    with ApiServer(create_app(api_settings("clik:", store_url=str(path)), store=store)) as server:
        assert server.client().post("/events", json={"events": events}).status_code == 202
    store.close()
    env = {**os.environ, "CLIK_STORE_URL": str(path)}
    cmd = [
        sys.executable,
        "-m",
        "clik_cli.main",
        "data",
        "events",
        str(tmp_path / "ds"),
        "--min-impressions",
        "5",
        "--smoothing",
        "10",
        "--test-frac",
        "0",
        "--with-labels",
        str(original),
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr
    assert "3 exhibitions (2 with the labels of sales-v1)" in done.stdout, done.stdout
    dataset = load_dataset(tmp_path / "ds")
    assert dataset.default_criterion == "engagement" and dataset.criteria[0] == "engagement"
    by_id = {ex.id: ex for ex in dataset.exhibitions}
    assert sorted(by_id) == ["e1", "e3", "orig"]  # the original's test exhibition stays its evaluation
    e1 = {p.id: p for p in by_id["e1"].products}
    assert {k: p.criteria["engagement"] for k, p in e1.items()} == {"a": 3.0, "b": 9.0, "z": 1.0}  # its sales
    assert not e1["z"].on_topic and e1["a"].image == str(original / "images" / "a.jpg")
    e3 = {p.id: p.criteria for p in by_id["e3"].products}
    assert e3["a"]["engagement"] == e3["a"]["ctr"] and e3["a"]["impressions"] == 40  # the logged CTR
    bad = subprocess.run(
        cmd[:-1] + [str(tmp_path / "nowhere")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400
    )
    assert bad.returncode == 2 and "error" in bad.stderr
