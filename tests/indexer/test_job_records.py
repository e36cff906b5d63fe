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
