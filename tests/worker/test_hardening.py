"""A real worker against a hostile image host (a dripping server is cut off at the fetch
deadline, a truncated body is a transient error) and a worker SIGKILLed mid-batch with DEFAULT
settings: its products are encoded soon after a new worker starts, none twice."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from indexer.config import RedisStoreConfig
from indexer.records import ProductStatus
from indexer.redis_store import RedisStore
from tests.support.hostile_server import HostileServer
from tests.support.services import service_missing
from tests.support.images import small_jpeg_bytes as jpeg_bytes
from tests.support.worker_harness import CeleryWorker, Internet, wait_for
from tests.support.services import BROKER_URL, STORE_URL, delete_keys
from tests.support.worker_harness import cleanup_broker

pytestmark = pytest.mark.redis


def _rig(tmp_path_factory, bundle, settings: dict, extra_env: dict | None = None):
    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis unreachable ({exc})")
    from worker.app import make_app
    from worker.settings import WorkerSettings

    token = uuid.uuid4().hex[:10]
    queue, prefix = f"clik-test-{token}", f"clik-test-{token}:"
    plumbing = {
        "broker_url": BROKER_URL,
        "queue": queue,
        "store_url": STORE_URL,
        "store_prefix": prefix,
        "device": "cpu",
    }
    store = RedisStore(RedisStoreConfig(url=STORE_URL, prefix=prefix))
    store.register_version(bundle.version, bundle.embed_dim, bundle_uri=str(bundle.path))
    store.activate(bundle.version)
    worker = CeleryWorker({**plumbing, **settings}, queue, tmp_path_factory.mktemp("celery"), extra_env=extra_env)
    client = make_app(WorkerSettings(**plumbing, _env_file=None))
    pending = store.pending_set()

    def cleanup():
        worker.stop()
        cleanup_broker(client, queue, amqp=False)
        store.close()
        delete_keys(redis.Redis.from_url(STORE_URL), prefix + "*")

    return store, worker, client, pending, queue, cleanup


def _settled(store, pending, ids) -> bool:
    return not pending.waiting(ids) and all(store.get_product(p).status is not ProductStatus.PENDING for p in ids)


def test_a_dripping_or_truncating_host_holds_the_worker_only_until_the_deadline(tmp_path_factory, tiny_bundle):
    host = HostileServer()
    host.files["good.jpg"] = jpeg_bytes(1)
    host.files["cut.jpg"] = jpeg_bytes(2)
    host.drip_interval_s = 0.2
    store, worker, client, pending, queue, cleanup = _rig(
        tmp_path_factory,
        tiny_bundle,
        {
            "allow_private_hosts": "true",
            "fetch_deadline_s": "2",
            "max_retries": "1",
            "retry_backoff_s": "0.2",
            "decode_threads": "1",
        },
    )
    try:
        worker.start()
        sources = {
            "drip": host.url("/drip/100000"),
            "cut": host.url("/truncate/cut.jpg"),
            "good": host.url("/img/good.jpg"),
        }
        for pid, url in sources.items():
            store.put_product(pid, url)
        start = time.monotonic()
        client.send_task("clik.encode_products", args=[list(sources)], queue=queue, ignore_result=True)
        wait_for(lambda: _settled(store, pending, list(sources)), 15, "every product to settle", worker.tail)
        took = time.monotonic() - start
        assert store.get_product("good").status is ProductStatus.ENCODED
        drip, cut = store.get_product("drip"), store.get_product("cut")
        assert drip.status is ProductStatus.FAILED and "gave up after 2" in drip.error and "deadline" in drip.error
        # cut short: retried (transient), not a permanent "corrupt image"
        assert cut.status is ProductStatus.FAILED and "gave up after 2" in cut.error and "truncated" in cut.error
        assert host.hits["/truncate/cut.jpg"] == 2
        assert took < 12, took  # two attempts of 2 s each for the drip, plus the worker's own time
    finally:
        cleanup()
        host.close()


def test_a_killed_worker_strands_nothing_with_default_settings(tmp_path_factory, tiny_bundle):
    net = Internet()  # reached as an HTTP proxy: the address checks run as in production
    proxy = {"http_proxy": net.proxy, "HTTP_PROXY": net.proxy, "no_proxy": "", "NO_PROXY": ""}
    store, worker, client, pending, queue, cleanup = _rig(tmp_path_factory, tiny_bundle, {}, extra_env=proxy)
    try:
        worker.start()
        names = [f"q{i}.jpg" for i in range(23)]
        net.files.update({n: jpeg_bytes(300 + i) for i, n in enumerate(names)})
        net.files["held.jpg"] = jpeg_bytes(399)
        net.slow_first_s = 25.0
        ids = [f"kill-{i}" for i in range(23)] + ["kill-held"]
        for pid, n in zip(ids, names):
            store.put_product(pid, net.url(f"/img/{n}"))
        store.put_product("kill-held", net.url("/slow/held.jpg"))
        before = pending.stats()
        # one event with all of them (a catalogue import): one drain leases them as one batch
        client.send_task("clik.encode_products", args=[ids], queue=queue, ignore_result=True)
        assert net.slow_started.wait(30)
        wait_for(lambda: all(net.hits[f"/img/{n}"] >= 1 for n in names), 20, "the quick fetches", worker.tail)
        worker.kill()
        assert all(store.get_product(p).status is ProductStatus.PENDING for p in ids)

        net.slow_first_s = 0
        worker.start()
        started = time.monotonic()
        wait_for(lambda: _settled(store, pending, ids), 120, "the killed worker's products", worker.tail)
        recovery = time.monotonic() - started
        print(f"kill recovery: {recovery:.1f}s after the new worker was ready")
        for pid in ids:
            assert store.get_product(pid).status is ProductStatus.ENCODED, pid
        after = pending.stats()
        assert after.get("vectors", 0) - before.get("vectors", 0) == 24  # each image encoded once
    finally:
        cleanup()
        net.close()
