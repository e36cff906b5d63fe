"""The embedded default without Redis or Celery: the in-process queue and the in-process re-index."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from clik.image_source import FetchLimits, content_hash
from indexer.errors import VersionNotFound
from indexer.records import ProductStatus
from worker.encode import EncoderCache, encode_products
from worker.inprocess import InProcessEncodeQueue
from worker.reindex import ReindexProgress, run_reindex
from worker.rollout import RolloutPolicy


@pytest.fixture(scope="module")
def encoders():
    return EncoderCache(device="cpu", batch_size=8)


def test_queue_batches_many_single_submits_and_fails_bad_ones(store, encoders, image_root, tiny_bundle):
    limits = FetchLimits(file_roots=(str(image_root),))
    sources = {f"g{i}": image_root / f"good{i}.jpg" for i in range(4)}
    sources |= {
        "copy": image_root / "copy_of_good0.jpg",
        "corrupt": image_root / "corrupt.jpg",
        "text": image_root / "notes.jpg",
    }
    for pid, src in sources.items():
        store.put_product(pid, str(src))
    gate = threading.Event()
    reports = []

    def hold_first(report):  # the first batch waits, so the other submits pile up
        reports.append(report)
        gate.wait(10)

    queue = InProcessEncodeQueue(store, encoders, limits, batch_size=16, on_report=hold_first)
    try:
        queue.submit(["g0"])
        assert not queue.join(timeout=0.05)  # submit did not block, the work is not done yet
        for pid in list(sources)[1:]:
            queue.submit([pid])  # one event per product, as the API sends them
        gate.set()
        assert queue.join(timeout=30)
    finally:
        queue.close()
    assert queue.batches == 2  # g0 alone, then the six others in one forward pass
    assert sorted(reports[1].encoded) == ["copy", "g1", "g2", "g3"]
    for pid in ("g0", "g1", "g2", "g3", "copy"):
        product = store.get_product(pid)
        assert product.status is ProductStatus.ENCODED
        assert store.has_vector(tiny_bundle.version, product.image_hash)
    assert "corrupt image" in store.get_product("corrupt").error
    assert "not an image" in store.get_product("text").error
    with pytest.raises(RuntimeError, match="closed"):
        queue.submit(["g0"])


def test_reindex_in_process_switches_version_and_drops_the_old(store, encoders, image_root, tiny_bundle, second_bundle):
    limits = FetchLimits(file_roots=(str(image_root),))
    old, new = tiny_bundle.version, second_bundle.version
    for i in range(4):
        store.put_product(f"p{i}", str(image_root / f"good{i}.jpg"))
    store.put_product("copy", str(image_root / "copy_of_good0.jpg"))
    encode_products(store, [f"p{i}" for i in range(4)] + ["copy"], encoders, limits)
    store.put_exhibition("e1", {"name": "summer"}, ["p0", "p1", "p2", "p3", "copy"])
    query = np.ones(tiny_bundle.embed_dim, np.float32)
    assert store.rank("e1", query).model_version == old

    store.register_version(new, second_bundle.embed_dim, bundle_uri=str(second_bundle.path))
    seen = []
    progress = run_reindex(
        store,
        new,
        encoders,
        limits,
        on_progress=lambda p: seen.append((p.done, p.total)),
        chunk_size=2,
        drop_previous=True,
    )
    assert progress.state == "done" and progress.previous == old
    assert progress.done == progress.total == 4  # four distinct images; the copy shares one
    assert seen[0] == (0, 4) and seen[-1] == (4, 4) and len(seen) >= 3  # one report per chunk
    assert store.active_version().name == new
    assert [v.name for v in store.list_versions()] == [new]
    with pytest.raises(VersionNotFound):
        store.get_vector(old, store.get_product("p0").image_hash)
    for i in range(4):
        digest = content_hash((image_root / f"good{i}.jpg").read_bytes())
        expected = encoders.get(store.get_version(new)).encode([image_root / f"good{i}.jpg"]).vectors[0]
        assert np.allclose(store.get_vector(new, digest).astype(np.float32), expected, atol=2e-3)
    ranking = store.rank("e1", query, k=5)
    assert ranking.model_version == new and ranking.total_scored == 5
    assert ReindexProgress.load(store, new).state == "done"  # readable by the CLI / API

    # idempotent: running it again writes nothing and keeps the version
    again = run_reindex(store, new, encoders, limits)
    assert again.done == 4 and store.active_version().name == new


def test_reindex_skips_images_that_changed_or_vanished(
    store, encoders, tmp_path, image_root, tiny_bundle, second_bundle
):
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.jpg").write_bytes((image_root / f"good{i}.jpg").read_bytes())
        store.put_product(f"p{i}", str(root / f"{i}.jpg"))
    limits = FetchLimits(file_roots=(str(root),))
    encode_products(store, ["p0", "p1", "p2"], encoders, limits)
    (root / "1.jpg").write_bytes((image_root / "good3.jpg").read_bytes())  # changed under the same name
    (root / "2.jpg").unlink()
    store.put_exhibition("e", {"name": "x"}, ["p0", "p1", "p2"])
    old, new = tiny_bundle.version, second_bundle.version
    store.register_version(new, second_bundle.embed_dim, bundle_uri=str(second_bundle.path))
    progress = run_reindex(store, new, encoders, limits, chunk_size=1)
    # Two of three images could not be re-encoded: the gate refuses, nothing changes.
    assert progress.done == 1 and progress.state == "refused"
    reasons = {store.get_product(p).image_hash: p for p in ("p1", "p2")}
    assert set(progress.skipped) == set(reasons)
    assert "changed since it was encoded" in progress.skipped[store.get_product("p1").image_hash]
    assert "file not found" in progress.skipped[store.get_product("p2").image_hash]
    assert "covers 1 of 3 products, the active one 3" in progress.decision
    assert "file not found" in progress.decision and "changed since it was encoded" in progress.decision
    assert store.active_version().name == old
    ranking = store.rank("e", np.ones(tiny_bundle.embed_dim, np.float32))
    assert ranking.model_version == old and ranking.total_scored == 3

    # A team that accepts the loss says so: a third of the active version's coverage is enough.
    progress = run_reindex(store, new, encoders, limits, chunk_size=1, policy=RolloutPolicy(min_coverage=0.3))
    assert progress.state == "switched" and store.active_version().name == new
    ranking = store.rank("e", np.ones(second_bundle.embed_dim, np.float32))
    assert ranking.total_scored == 1 and sorted(ranking.pending) == ["p1", "p2"]
    assert store.has_vector(old, store.get_product("p0").image_hash)  # kept for a rollback


def test_reindex_of_an_unregistered_version_is_refused(store, encoders, image_root):
    with pytest.raises(VersionNotFound):
        run_reindex(store, "not-registered", encoders, FetchLimits(file_roots=(str(image_root),)))
