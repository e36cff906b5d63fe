"""Job records (re-index progress) on both backends: written by one process, read by another."""

from __future__ import annotations

import pytest

from indexer.errors import InvalidInput


def test_job_record_round_trip_across_processes(store_factory):
    writer, reader = store_factory.open(), store_factory.open()
    assert reader.get_job("reindex:v2") is None
    writer.put_job("reindex:v2", {"state": "filling", "done": 3, "total": 10, "skipped": {"h": "404"}})
    assert reader.get_job("reindex:v2") == {"state": "filling", "done": 3, "total": 10, "skipped": {"h": "404"}}
    writer.put_job("reindex:v2", {"state": "done", "done": 10, "total": 10})
    assert reader.get_job("reindex:v2") == {"state": "done", "done": 10, "total": 10}
    assert reader.get_job("reindex:v3") is None


def test_job_id_must_be_valid(store_factory):
    store = store_factory.open()
    with pytest.raises(InvalidInput):
        store.put_job("", {"a": 1})


def test_update_jobs_loses_no_update_between_processes(store_factory):
    """Writers in two "processes" (two stores over the same data), two threads each, add to one
    counter and append to one list with read-check-write steps: every step lands once."""
    import threading

    stores = [store_factory.open(), store_factory.open()]
    steps = 25

    def add(store, name: str) -> None:
        for i in range(steps):

            def change(current, i=i):
                doc = current["tally"] or {"n": 0, "who": []}
                return {"tally": {"n": doc["n"] + 1, "who": doc["who"] + [f"{name}-{i}"]}}

            store.update_jobs(["tally", "untouched"], change)

    threads = [threading.Thread(target=add, args=(stores[k % 2], f"w{k}")) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tally = stores[0].get_job("tally")
    assert tally["n"] == 4 * steps and len(set(tally["who"])) == 4 * steps
    assert stores[1].get_job("untouched") is None


def test_update_jobs_sees_current_records_and_writes_nothing_when_change_refuses(store_factory):
    store = store_factory.open()
    store.put_job("bind:e", {"experiment": "a"})
    seen = {}

    def refuse(current):
        seen.update(current)
        raise LookupError("held")

    with pytest.raises(LookupError):
        store.update_jobs(["exp:b", "bind:e"], refuse)
    assert seen == {"exp:b": None, "bind:e": {"experiment": "a"}}
    assert store.get_job("exp:b") is None
    with pytest.raises(InvalidInput):  # a record it did not read
        store.update_jobs(["exp:b"], lambda current: {"bind:e": {}})
    assert store.get_job("bind:e") == {"experiment": "a"}
    store.update_jobs(["exp:b", "bind:e"], lambda current: {"exp:b": {"v": 1}, "bind:e": {"experiment": "b"}})
    assert (store.get_job("exp:b"), store.get_job("bind:e")) == ({"v": 1}, {"experiment": "b"})
