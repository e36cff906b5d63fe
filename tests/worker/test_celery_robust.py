"""A real worker on Redis under stress: every bad URL kind, SIGKILL mid-batch, re-index (and a
re-index killed halfway). HTTP images come from tests.support.worker_harness.Internet through a proxy,
so the worker's address checks run as in production (no private-host exemption)."""

from __future__ import annotations

import io
import json
import time
import uuid

import numpy as np
import pytest
import redis

from clik.image_source import content_hash
from indexer.config import RedisStoreConfig
from indexer.errors import VersionNotFound
from indexer.records import ProductStatus
from indexer.redis_store import RedisStore
from tests.support.services import service_missing
from tests.support.images import small_jpeg_bytes as jpeg_bytes
from tests.support.worker_harness import CeleryWorker, Internet, wait_for
from tests.support.services import BROKER_URL, STORE_URL, delete_keys
from tests.support.worker_harness import cleanup_broker
from worker.reindex import ReindexProgress

pytestmark = pytest.mark.redis

MAX_BYTES = 300_000
MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
def rig(tmp_path_factory, tiny_bundle, image_root):
    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis unreachable ({exc})")
    from worker.app import make_app
    from worker.settings import WorkerSettings

    internet = Internet()
    token = uuid.uuid4().hex[:10]
    queue, prefix = f"clik-test-{token}", f"clik-test-{token}:"
    settings = {
        "broker_url": BROKER_URL,
        "queue": queue,  # no result backend: the store tells
        "store_url": STORE_URL,
        "store_prefix": prefix,
        "file_roots": json.dumps([str(image_root)]),
        "device": "cpu",
        "batch_size": "16",
        "decode_threads": "4",
        "max_retries": "1",
        "retry_backoff_s": "0.2",
        "connect_timeout_s": "1",
        "max_bytes": str(MAX_BYTES),
        "max_pixels": str(MAX_PIXELS),
        "visibility_timeout_s": "4",
        "reindex_chunk_size": "2",
        "reindex_drop_grace_s": "0.5",
    }
    proxy = {"http_proxy": internet.proxy, "HTTP_PROXY": internet.proxy, "no_proxy": "", "NO_PROXY": ""}
    store = RedisStore(RedisStoreConfig(url=STORE_URL, prefix=prefix))
    store.register_version(tiny_bundle.version, tiny_bundle.embed_dim, bundle_uri=str(tiny_bundle.path))
    store.activate(tiny_bundle.version)
    worker = CeleryWorker(settings, queue, tmp_path_factory.mktemp("celery"), extra_env=proxy)
    worker.start()
    client = make_app(WorkerSettings(**{**settings, "file_roots": [str(image_root)]}, _env_file=None))
    pending = store.pending_set()

    def send(product_ids):
        for pid in product_ids:
            client.send_task("clik.encode_products", args=[[pid]], queue=queue, ignore_result=True)

    def settled(product_ids) -> bool:
        return not pending.waiting(product_ids) and all(
            store.get_product(p).status is not ProductStatus.PENDING for p in product_ids
        )

    yield {
        "store": store,
        "worker": worker,
        "client": client,
        "pending": pending,
        "internet": internet,
        "send": send,
        "settled": settled,
        "queue": queue,
    }
    worker.stop()
    internet.close()
    cleanup_broker(client, queue, amqp=False)
    store.close()
    delete_keys(redis.Redis.from_url(STORE_URL), prefix + "*")


def png_bytes(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_every_bad_image_and_url_fails_with_its_reason_while_the_rest_succeed(
    rig, image_root, outside_file, tiny_bundle, tmp_path
):
    store, net, pending = rig["store"], rig["internet"], rig["pending"]
    net.files.update(
        {
            "good-a.jpg": jpeg_bytes(101),
            "good-b.jpg": jpeg_bytes(102),
            "slow.jpg": jpeg_bytes(103),
            "huge.png": png_bytes(1200, 1000),
        }
    )
    (image_root / "huge.png").write_bytes(png_bytes(1100, 1000))
    (image_root / "big.jpg").write_bytes(jpeg_bytes(104) + b"\x00" * MAX_BYTES)
    sources = {
        "http-a": net.url("/img/good-a.jpg"),
        "http-b": net.url("/img/good-b.jpg"),
        "file-0": str(image_root / "good0.jpg"),
        "corrupt": str(image_root / "corrupt.jpg"),
        "not-image": str(image_root / "notes.jpg"),
        "pixels-file": str(image_root / "huge.png"),
        "pixels-http": net.url("/img/huge.png"),
        "big-file": str(image_root / "big.jpg"),
        "big-http": net.url(f"/big/{MAX_BYTES + 10}"),
        "private": "http://10.1.2.3/a.jpg",
        "loopback": "http://127.0.0.1:9/a.jpg",
        "metadata": "http://169.254.169.254/latest/meta-data",
        "outside": str(outside_file),
        "redirect": net.url("/redirect-private/x.jpg"),
        "404": net.url("/missing.jpg"),
        "timeout": net.url("/hang/x.jpg"),
        "scheme": "gopher://example.com/a.jpg",
    }
    expected = {
        "corrupt": "corrupt image",
        "not-image": "not an image",
        "pixels-file": "too many pixels",
        "pixels-http": "too many pixels",
        "big-file": "file too large",
        "big-http": "image too large",
        "private": "refused address 10.1.2.3",
        "loopback": "refused address 127.0.0.1",
        "metadata": "refused address 169.254.169.254",
        "outside": "outside the allowed roots",
        "redirect": "refused address 10.1.2.3",
        "404": "HTTP 404",
        "timeout": "gave up after 2 attempts",
        "scheme": "unsupported URL scheme",
    }
    for pid, src in sources.items():
        store.put_product(pid, src)
    # A slow product keeps the worker's drain busy while the events queue up behind it.
    store.put_product("slow", net.url("/slow/slow.jpg"))
    before = pending.stats()
    rig["send"](["slow"])
    assert net.slow_started.wait(20)
    rig["send"](list(sources))
    wait_for(lambda: rig["settled"](list(sources) + ["slow"]), 90, "every product to settle", rig["worker"].tail)

    for pid, words in expected.items():
        product = store.get_product(pid)
        assert product.status is ProductStatus.FAILED and words in product.error, (pid, product.error)
    assert "timed out" in store.get_product("timeout").error
    for pid in ("http-a", "http-b", "file-0", "slow"):
        product = store.get_product(pid)
        assert product.status is ProductStatus.ENCODED
        assert store.has_vector(tiny_bundle.version, product.image_hash)
    assert store.get_product("http-a").image_hash == content_hash(net.files["good-a.jpg"])
    after = pending.stats()
    # 18 events: the slow one alone, the 17 others in two batches of at most 16, then the
    # timeout's retry alone: 4 forward passes, not 18 (3 when the timeout fell in the short batch).
    assert 3 <= after["batches"] - before.get("batches", 0) <= 4
    assert net.hits["/hang/x.jpg"] == 2 and net.hits["/redirect-private/x.jpg"] == 1


def test_worker_killed_mid_batch_loses_nothing_and_encodes_nothing_twice(rig, tiny_bundle):
    store, net, pending, worker = rig["store"], rig["internet"], rig["pending"], rig["worker"]
    names = [f"k{i}.jpg" for i in range(5)]
    net.files.update({name: jpeg_bytes(200 + i) for i, name in enumerate(names)})
    net.files["k-slow.jpg"] = jpeg_bytes(299)
    net.slow_started.clear()
    net.slow_first_s = 6.0
    ids = [f"kill-{i}" for i in range(5)] + ["kill-slow"]
    for pid, name in zip(ids, names):
        store.put_product(pid, net.url(f"/img/{name}"))
    store.put_product("kill-slow", net.url("/slow/k-slow.jpg"))
    before = pending.stats()
    # One event with the six products (a catalogue import), so they share one batch.
    rig["client"].send_task("clik.encode_products", args=[ids], queue=rig["queue"], ignore_result=True)
    # The drain has fetched the five quick images and waits on the slow one: kill it now.
    assert net.slow_started.wait(30)
    wait_for(lambda: all(net.hits[f"/img/{n}"] == 1 for n in names), 10, "the quick fetches")
    worker.kill()
    assert all(store.get_product(p).status is ProductStatus.PENDING for p in ids)
    assert set(pending.waiting(ids)) == set(ids)  # nothing was taken out of the pending set

    net.slow_first_s = 0
    # The Redis broker hands an unacknowledged message out again once it is older than the
    # visibility timeout (4 s here), checked when a worker starts and then only every ~100 s.
    time.sleep(5)
    worker.start()  # a new worker: the unacknowledged drain comes back
    wait_for(lambda: rig["settled"](ids), 90, "the redelivered batch", worker.tail)
    for pid in ids:
        product = store.get_product(pid)
        assert product.status is ProductStatus.ENCODED and store.has_vector(tiny_bundle.version, product.image_hash)
    after = pending.stats()
    assert after["vectors"] - before.get("vectors", 0) == 6  # each image encoded exactly once
    assert all(net.hits[f"/img/{n}"] == 2 for n in names)  # fetched again, never encoded twice


def _ranking_version(store, dim: int) -> str:
    return store.rank("robust-ex", np.ones(dim, np.float32)).model_version


def test_reindex_switches_version_drops_the_old_and_rankings_follow(rig, tiny_bundle, second_bundle):
    store, client, worker = rig["store"], rig["client"], rig["worker"]
    encoded = _encoded_hashes(store)
    assert len(encoded) >= 8
    store.put_exhibition("robust-ex", {"name": "anything"}, sorted(_encoded_products(store)))
    assert _ranking_version(store, tiny_bundle.embed_dim) == tiny_bundle.version
    client.send_task(
        "clik.reindex", args=[second_bundle.version, str(second_bundle.path)], queue=rig["queue"], ignore_result=True
    )
    wait_for(
        lambda: (ReindexProgress.load(store, second_bundle.version) or ReindexProgress("x")).state == "done",
        120,
        "the re-index to finish",
        worker.tail,
    )
    progress = ReindexProgress.load(store, second_bundle.version)
    assert progress.previous == tiny_bundle.version and not progress.skipped
    assert progress.done == progress.total == len(encoded)
    assert store.active_version().name == second_bundle.version
    assert [v.name for v in store.list_versions()] == [second_bundle.version]
    for digest in encoded:
        assert store.has_vector(second_bundle.version, digest)
    with pytest.raises(VersionNotFound):
        store.has_vector(tiny_bundle.version, next(iter(encoded)))
    ranking = store.rank("robust-ex", np.ones(second_bundle.embed_dim, np.float32), k=3)
    assert ranking.model_version == second_bundle.version and ranking.total_scored == len(_encoded_products(store))


def test_reindex_killed_halfway_resumes_and_does_only_the_rest(rig, second_bundle, third_bundle):
    store, client, worker, net = rig["store"], rig["client"], rig["worker"], rig["internet"]
    encoded = _encoded_hashes(store)
    http_paths = [p for p in net.hits if p.startswith("/img/")]
    hits_before = sum(net.hits[p] for p in http_paths)
    net.delay_s = 0.4  # every HTTP image is slow: chunks of 2 take a while
    v3 = third_bundle.version
    client.send_task("clik.reindex", args=[v3, str(third_bundle.path)], queue=rig["queue"], ignore_result=True)

    def done_some() -> bool:
        progress = ReindexProgress.load(store, v3)
        return progress is not None and 2 <= progress.done < progress.total

    wait_for(done_some, 60, "the first chunks", worker.tail)
    worker.kill()
    killed_at = ReindexProgress.load(store, v3)
    assert killed_at.state == "filling" and store.active_version().name == second_bundle.version

    net.delay_s = 0.0
    time.sleep(5)  # past the visibility timeout (see the kill test above)
    worker.start()
    wait_for(lambda: ReindexProgress.load(store, v3).state == "done", 120, "the resumed re-index", worker.tail)
    progress = ReindexProgress.load(store, v3)
    assert store.active_version().name == v3
    assert [v.name for v in store.list_versions()] == [v3]
    for digest in encoded:
        assert store.has_vector(v3, digest)
    # Only the chunk in flight at the kill is read twice; finished chunks are not redone.
    http_reads = sum(net.hits[p] for p in http_paths) - hits_before
    http_images = sum(1 for p in http_paths if content_hash(net.files[p.split("/")[-1]]) in encoded)
    assert http_images <= http_reads <= http_images + 2
    assert progress.done >= killed_at.done


def _encoded_products(store) -> dict[str, str]:
    out = {}
    for ids, _ in store.iter_product_vectors(store.active_version().name):
        for pid in ids:
            out[pid] = store.get_product(pid).image_hash
    return out


def _encoded_hashes(store) -> set[str]:
    return set(_encoded_products(store).values())
