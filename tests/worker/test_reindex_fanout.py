"""Re-index fan-out with real Celery workers on the real Redis: two solo workers on one queue
share the chunks of one re-index; a worker SIGKILLed mid-chunk leaves its chunk to the other
after the lease. Images are HTTP through tests.support.worker_harness.Internet (a small delay per image,
so chunks take long enough for both workers to take some and for a kill to land mid-chunk)."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest
import redis

from clik.image_source import content_hash
from indexer.config import RedisStoreConfig
from indexer.errors import VersionNotFound
from indexer.redis_store import RedisStore
from tests.support.services import service_missing
from tests.support.images import small_jpeg_bytes as jpeg_bytes
from tests.support.worker_harness import CeleryWorker, Internet, wait_for
from tests.support.services import BROKER_URL, STORE_URL, delete_keys
from tests.support.worker_harness import cleanup_broker
from worker.reindex import CHUNK_RUNNING, ChunkRecord, ReindexProgress, load_record

pytestmark = [pytest.mark.redis, pytest.mark.serial]  # kills timed against leases

N_IMAGES = 24
CHUNK_SIZE = 4
# Long enough that no chunk outlives its lease on a busy CI box (two test processes beside the
# workers: 4 s was seen to run out, and an image was read twice); the kill test waits it out.
LEASE_S = 10.0


@pytest.fixture(scope="module")
def rig(tmp_path_factory, tiny_bundle):
    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis unreachable ({exc})")
    from worker.app import make_app
    from worker.settings import WorkerSettings

    internet = Internet()
    internet.delay_s = 0.1
    token = uuid.uuid4().hex[:10]
    queue, prefix = f"clik-test-{token}", f"clik-test-{token}:"
    settings = {
        "broker_url": BROKER_URL,
        "queue": queue,
        "store_url": STORE_URL,
        "store_prefix": prefix,
        "device": "cpu",
        "batch_size": "16",
        "decode_threads": "1",
        "max_retries": "1",
        "reindex_chunk_size": str(CHUNK_SIZE),
        "reindex_check_s": "0.3",
        "reindex_chunk_lease_s": str(LEASE_S),
        "reindex_drop_grace_s": "0.5",
    }
    proxy = {"http_proxy": internet.proxy, "HTTP_PROXY": internet.proxy, "no_proxy": "", "NO_PROXY": ""}
    store = RedisStore(RedisStoreConfig(url=STORE_URL, prefix=prefix))
    store.register_version(tiny_bundle.version, tiny_bundle.embed_dim, bundle_uri=str(tiny_bundle.path))
    store.activate(tiny_bundle.version)
    # A catalogue already encoded with the active version (the starting point of a re-index).
    rng = np.random.default_rng(0)
    hashes = []
    for i in range(N_IMAGES):
        data = jpeg_bytes(500 + i)
        internet.files[f"fan{i}.jpg"] = data
        digest = content_hash(data)
        store.put_product(f"fan-{i}", internet.url(f"/img/fan{i}.jpg"))
        store.mark_encoded(f"fan-{i}", digest)
        store.put_vectors(tiny_bundle.version, [(digest, rng.standard_normal(tiny_bundle.embed_dim))])
        hashes.append(digest)

    workers = [CeleryWorker(settings, queue, tmp_path_factory.mktemp(f"fanout{n}"), extra_env=proxy) for n in range(2)]
    workers[1].starts = 10  # node names <queue>-1@host and <queue>-11@host: told apart in the records
    starting = [threading.Thread(target=w.start) for w in workers]
    for t in starting:
        t.start()
    for t in starting:
        t.join()
    assert all(w.alive() for w in workers), "a worker did not start"
    client = make_app(WorkerSettings(**settings, _env_file=None))

    yield {"store": store, "workers": workers, "client": client, "internet": internet, "queue": queue, "hashes": hashes}
    for w in workers:
        w.stop()
    internet.close()
    cleanup_broker(client, queue, amqp=False)
    store.close()
    delete_keys(redis.Redis.from_url(STORE_URL), prefix + "*")


def node(worker: CeleryWorker) -> str:
    return f"{worker.queue}-{worker.starts}"


def worker_counts(progress: ReindexProgress) -> dict[str, int]:
    """images encoded per worker, keyed by node name without the host part"""
    return {name.split("@")[0]: n for name, n in progress.workers.items()}


def logs(rig) -> str:
    return "\n".join(w.tail(3000) for w in rig["workers"])


def wait_done(rig, version: str, timeout: float = 60) -> ReindexProgress:
    wait_for(
        lambda: (ReindexProgress.load(rig["store"], version) or ReindexProgress("x")).state == "done",
        timeout,
        f"the re-index of {version[:12]} to finish",
        lambda: logs(rig),
    )
    return ReindexProgress.load(rig["store"], version)


def test_reindex_fans_out_to_both_workers_switches_and_drops_the_old_version(rig, tiny_bundle, second_bundle):
    store, client, workers, net = rig["store"], rig["client"], rig["workers"], rig["internet"]
    v2 = second_bundle.version
    client.send_task("clik.reindex", args=[v2, str(second_bundle.path)], queue=rig["queue"], ignore_result=True)

    seen_partial = []

    def finished() -> bool:
        progress = ReindexProgress.load(store, v2)
        if progress is not None and 0 < progress.done < progress.total:
            seen_partial.append(progress.done)  # progress moves while the chunks run
        return progress is not None and progress.state == "done"

    wait_for(finished, 60, "the fanned-out re-index", lambda: logs(rig))
    progress = ReindexProgress.load(store, v2)
    assert progress.previous == tiny_bundle.version and not progress.skipped
    assert progress.done == progress.total == N_IMAGES
    assert progress.chunks == N_IMAGES // CHUNK_SIZE and not progress.open_chunks
    counts = worker_counts(progress)
    assert set(counts) == {node(w) for w in workers}, counts  # both workers encoded chunks
    assert all(n >= CHUNK_SIZE for n in counts.values()) and sum(counts.values()) == N_IMAGES
    assert seen_partial, "progress was never seen between 0 and the total"
    assert store.active_version().name == v2
    assert [v.name for v in store.list_versions()] == [v2]
    assert all(store.has_vector(v2, h) for h in rig["hashes"])
    with pytest.raises(VersionNotFound):
        store.has_vector(tiny_bundle.version, rig["hashes"][0])
    assert all(net.hits[f"/img/fan{i}.jpg"] == 1 for i in range(N_IMAGES))  # each image read once

    # Sent again for the finished version: it re-checks, encodes nothing, keeps the counts.
    before = load_record(store, v2)
    client.send_task("clik.reindex", args=[v2], queue=rig["queue"], ignore_result=True)
    wait_for(lambda: load_record(store, v2).updated_at > before.updated_at, 30, "the re-check", lambda: logs(rig))
    time.sleep(1.0)  # time for any (wrong) chunk task to run
    again = ReindexProgress.load(store, v2)
    assert again.state == "done" and again.done == N_IMAGES and again.chunks == before.chunks
    assert all(net.hits[f"/img/fan{i}.jpg"] == 1 for i in range(N_IMAGES))
    assert all(w.alive() for w in workers)


def test_worker_killed_mid_chunk_the_other_finishes_after_the_lease(rig, second_bundle, third_bundle):
    store, client, workers, net = rig["store"], rig["client"], rig["workers"], rig["internet"]
    assert store.active_version().name == second_bundle.version, "runs after the first test"
    victim, survivor = workers
    v3 = third_bundle.version
    net.delay_s = 0.6  # 2.4 s per chunk: a kill lands mid-chunk, even on a busy box
    hits_before = sum(net.hits[f"/img/fan{i}.jpg"] for i in range(N_IMAGES))
    client.send_task("clik.reindex", args=[v3, str(third_bundle.path)], queue=rig["queue"], ignore_result=True)

    victim_chunk: list[ChunkRecord] = []

    def victim_running() -> bool:
        record = load_record(store, v3)
        for chunk_id in record.open_chunks if record else {}:
            chunk = ChunkRecord.load(store, v3, chunk_id)
            if chunk and chunk.state == CHUNK_RUNNING and chunk.worker.split("@")[0] == node(victim):
                victim_chunk.append(chunk)
                return True
        return False

    wait_for(victim_running, 30, "a chunk running on the first worker", lambda: logs(rig))
    victim.kill()
    killed = victim_chunk[0]

    progress = wait_done(rig, v3)
    # The killed chunk never finished, and the broker cannot have handed its message out again
    # (visibility timeout 1 h): its images were planned again once its lease ran out.
    assert ChunkRecord.load(store, v3, killed.chunk_id).state == CHUNK_RUNNING
    assert progress.done == progress.total == N_IMAGES and not progress.skipped
    assert worker_counts(progress).get(node(survivor), 0) >= N_IMAGES // 2
    assert store.active_version().name == v3
    assert [v.name for v in store.list_versions()] == [v3]
    assert all(store.has_vector(v3, h) for h in rig["hashes"])
    with pytest.raises(VersionNotFound):
        store.has_vector(second_bundle.version, rig["hashes"][0])
    # Only the killed chunk's images were read twice.
    reads = sum(net.hits[f"/img/fan{i}.jpg"] for i in range(N_IMAGES)) - hits_before
    assert N_IMAGES <= reads <= N_IMAGES + CHUNK_SIZE
    assert survivor.alive()
    assert not load_record(store, v3).open_chunks  # the dead chunk is no longer tracked after the switch


def test_a_reindex_whose_images_all_fail_is_refused_and_the_active_version_stays(rig, second_bundle, third_bundle):
    store, client, net = rig["store"], rig["client"], rig["internet"]
    assert store.active_version().name == third_bundle.version, "runs after the kill test"
    v2, v3 = second_bundle.version, third_bundle.version
    files, net.files = net.files, {}  # the image host now answers 404 for every image
    try:
        client.send_task("clik.reindex", args=[v2, str(second_bundle.path)], queue=rig["queue"], ignore_result=True)
        wait_for(
            lambda: (load_record(store, v2) or ReindexProgress("x")).state == "refused",
            60,
            "the refusal",
            lambda: logs(rig),
        )
    finally:
        net.files = files
    job = load_record(store, v2)
    assert len(job.skipped) == N_IMAGES and all("HTTP 404" in r for r in job.skipped.values())
    assert f"covers 0 of {N_IMAGES} products, the active one {N_IMAGES}" in job.decision
    assert f"{N_IMAGES} × HTTP 404 from …" in job.decision
    time.sleep(1.5)  # a wrongly scheduled drop (grace 0.5 s) would have run by now
    assert store.active_version().name == v3
    assert all(store.has_vector(v3, h) for h in rig["hashes"])
    store.put_exhibition("fan-e", {"name": "fan"}, [f"fan-{i}" for i in range(N_IMAGES)])
    ranking = store.rank("fan-e", np.ones(third_bundle.embed_dim, np.float32), k=3)
    assert ranking.model_version == v3 and ranking.total_scored == N_IMAGES


def test_malformed_chunk_messages_fail_with_a_reason():
    # Checked before anything is read or written: a bad message fails at once and is not retried.
    from worker.tasks import reindex_chunk

    with pytest.raises(ValueError, match=r"\[image hash, source\] pairs"):
        reindex_chunk("v1", "c1", "not a list")
    with pytest.raises(ValueError, match=r"\[image hash, source\] pairs"):
        reindex_chunk("v1", "c1", [["only-a-hash"]])
    with pytest.raises(ValueError, match="a version and a chunk id"):
        reindex_chunk("v1", "", [["h", "s"]])


def test_a_resent_coordinator_plans_only_what_is_neither_done_nor_out(tmp_path, tiny_bundle, second_bundle):
    # The planning logic on the embedded store with real encoding (no Celery): what a coordinator
    # sent again mid-job, and one running after a lease, hand out.
    from clik.image_source import FetchLimits
    from indexer.config import EmbeddedStoreConfig
    from indexer.embedded_store import EmbeddedStore
    from worker import reindex
    from worker.encode import EncoderCache

    root = tmp_path / "images"
    root.mkdir()
    store = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path / "store"))
    store.register_version(tiny_bundle.version, tiny_bundle.embed_dim, bundle_uri=str(tiny_bundle.path))
    store.activate(tiny_bundle.version)
    rng = np.random.default_rng(1)
    for i in range(10):
        data = jpeg_bytes(700 + i)
        (root / f"p{i}.jpg").write_bytes(data)
        store.put_product(f"p{i}", str(root / f"p{i}.jpg"))
        store.mark_encoded(f"p{i}", content_hash(data))
        store.put_vectors(tiny_bundle.version, [(content_hash(data), rng.standard_normal(tiny_bundle.embed_dim))])
    store.register_version(second_bundle.version, second_bundle.embed_dim, bundle_uri=str(second_bundle.path))
    v2, encoders, limits = second_bundle.version, EncoderCache("cpu", 8), FetchLimits(file_roots=(str(root),))
    options = reindex.FanoutOptions(chunk_size=3, max_in_flight=2, lease_s=60)

    progress = reindex.start(store, v2)
    first = reindex.plan_chunks(store, progress, options)
    assert [len(items) for _, items in first] == [3, 3] and progress.total == 10
    (done_chunk, done_items), (out_chunk, out_items) = first
    finished = reindex.run_chunk(store, v2, done_chunk.chunk_id, done_items, "w1", encoders, limits)
    assert finished.done == 3 and finished.state == reindex.CHUNK_DONE

    view = ReindexProgress.load(store, v2)  # what `clik models list` shows meanwhile
    assert (view.done, view.in_flight, view.total, view.workers) == (3, 1, 10, {"w1": 3})
    assert load_record(store, v2).done == 0  # the view was not written back

    resent = reindex.start(store, v2)  # the coordinator sent again: counts the finished chunk
    assert (resent.done, resent.total, resent.chunks) == (3, 10, 1)
    second = reindex.plan_chunks(store, resent, options)
    assert len(second) == 1  # one chunk is still out: only one more fits
    planned = {h for h, _ in second[0][1]}
    assert not planned & ({h for h, _ in done_items} | {h for h, _ in out_items})

    # The chunk still out never finishes (its worker died): after the lease its images come back.
    expired = reindex.plan_chunks(store, load_record(store, v2), reindex.FanoutOptions(3, 3, lease_s=0.0))
    replanned = {h for _, items in expired for h, _ in items}
    assert len(replanned) == 7 and {h for h, _ in out_items} <= replanned  # every image not done
    assert not replanned & {h for h, _ in done_items}

    # A redelivered finished chunk does nothing; a late duplicate encodes only what is missing.
    assert reindex.run_chunk(store, v2, done_chunk.chunk_id, done_items, "w2", encoders, limits) is None
    for chunk, items in expired:
        reindex.run_chunk(store, v2, chunk.chunk_id, items, "w2", encoders, limits)
    late = reindex.run_chunk(store, v2, out_chunk.chunk_id, out_items, "w1", encoders, limits)
    assert late.done == 0 and all(store.has_vector(v2, h) for h, _ in out_items)
    store.close()
