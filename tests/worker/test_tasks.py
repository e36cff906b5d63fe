"""A real Celery worker process (solo pool) on the real Redis store, with Redis and RabbitMQ brokers.

Broker and results live in Redis db 13 under a queue and worker name unique to this session;
the store in db 15 under a unique prefix. Everything is deleted and the worker stopped after.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import redis

from clik.image_source import content_hash
from indexer.config import RedisStoreConfig
from indexer.records import ProductStatus
from indexer.redis_store import RedisStore
from tests.support.services import AMQP_URL, BROKER_URL, STORE_URL, amqp_unreachable, delete_keys, service_missing
from tests.support.worker_harness import CeleryWorker, cleanup_broker, wait_for

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module", params=["redis", "amqp"])
def env(request, tmp_path_factory, tiny_bundle, image_root):
    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis unreachable ({exc})")
    if request.param == "amqp" and (reason := amqp_unreachable()):
        pytest.skip(reason)
    broker_url = AMQP_URL if request.param == "amqp" else BROKER_URL
    from worker.app import make_app
    from worker.settings import WorkerSettings

    token = uuid.uuid4().hex[:10]
    queue, prefix = f"clik-test-{token}", f"clik-test-{token}:"
    settings = {
        "broker_url": broker_url,
        "result_backend": BROKER_URL,
        "queue": queue,
        "store_url": STORE_URL,
        "store_prefix": prefix,
        "file_roots": json.dumps([str(image_root)]),
        "device": "cpu",
        "batch_size": "8",
        "max_retries": "1",
        "retry_backoff_s": "0.2",
    }
    store = RedisStore(RedisStoreConfig(url=STORE_URL, prefix=prefix))
    store.register_version(tiny_bundle.version, tiny_bundle.embed_dim, bundle_uri=str(tiny_bundle.path))
    store.activate(tiny_bundle.version)
    worker = CeleryWorker(settings, queue, tmp_path_factory.mktemp("celery"))
    worker.start()
    client = make_app(WorkerSettings(**{**settings, "file_roots": [str(image_root)]}, _env_file=None))
    pending = store.pending_set()

    def run(product_ids: list[str], timeout: float = 60) -> dict[str, ProductStatus]:
        """Send one task per product (as the API does); wait until every one went through a batch."""
        seen = pending.stats().get("images", 0)
        for pid in product_ids:
            client.send_task("clik.encode_products", args=[[pid]], queue=queue, ignore_result=True)

        def done() -> bool:
            return (
                pending.stats().get("images", 0) >= seen + len(product_ids)
                and not pending.waiting(product_ids)
                and all(store.get_product(p).status is not ProductStatus.PENDING for p in product_ids)
            )

        wait_for(done, timeout, "the products to be processed", worker.tail)
        return {pid: store.get_product(pid).status for pid in product_ids}

    result_ids: list[str] = []

    def call(name: str, args: list, timeout: float = 30):
        """Send a task and wait for its result (raises the task's error)."""
        result = client.send_task(name, args=args, queue=queue)
        result_ids.append(result.id)
        return result.get(timeout=timeout)

    run.call = call
    yield store, run, worker, pending
    worker.stop()
    results = redis.Redis.from_url(BROKER_URL)
    for rid in result_ids:
        results.delete(f"celery-task-meta-{rid}")
    cleanup_broker(client, queue, request.param == "amqp")
    store.close()
    delete_keys(redis.Redis.from_url(STORE_URL), prefix + "*")


def test_events_encode_good_images_and_fail_each_bad_one(env, image_root, outside_file, tiny_bundle):
    store, run, worker, pending = env
    v = tiny_bundle.version
    sources = {
        "g0": image_root / "good0.jpg",
        "g1": image_root / "good1.jpg",
        "g2": image_root / "good2.jpg",
        "g0-copy": image_root / "copy_of_good0.jpg",
        "corrupt": image_root / "corrupt.jpg",
        "text": image_root / "notes.jpg",
        "missing": image_root / "nope.jpg",
        "outside": outside_file,
        "loopback": "http://127.0.0.1:9/a.jpg",
    }
    for pid, src in sources.items():
        store.put_product(pid, str(src))
    statuses = run(list(sources))

    expected = {
        "corrupt": "corrupt image",
        "text": "not an image",
        "missing": "file not found",
        "outside": "outside the allowed roots",
        "loopback": "refused address 127.0.0.1",
    }
    for pid, words in expected.items():
        product = store.get_product(pid)
        assert statuses[pid] is ProductStatus.FAILED and words in product.error, (pid, product.error)
    for pid in ("g0", "g0-copy", "g1", "g2"):
        product = store.get_product(pid)
        assert statuses[pid] is ProductStatus.ENCODED
        assert product.image_hash == content_hash(Path(sources[pid]).read_bytes())
        assert store.has_vector(v, product.image_hash)
    assert store.get_product("g0").image_hash == store.get_product("g0-copy").image_hash
    stats = pending.stats()
    assert stats["vectors"] == 3  # g0 and its copy share one vector
    assert stats["images"] == len(sources)  # each product went through exactly one batch
    # (how few forward passes the events make is pinned down in test_celery_robust.py, where a
    # slow image holds the worker while the events queue up)

    # Events again (a redelivery, a repeated PUT): nothing is encoded twice, statuses stay.
    again = run(["g0", "g1", "g2", "g0-copy"])
    assert pending.stats()["vectors"] == 3
    assert set(again.values()) == {ProductStatus.ENCODED}
    assert worker.alive()


def test_transient_errors_are_retried_then_fail(env, image_root):
    store, run, _, _ = env
    # .invalid never resolves: a DNS failure is transient, so it is retried (max_retries=1) first
    store.put_product("dns", f"http://images-{uuid.uuid4().hex[:6]}.invalid/a.jpg")
    store.put_product("good", str(image_root / "good3.jpg"))
    run(["dns", "good"])
    assert store.get_product("good").status is ProductStatus.ENCODED
    product = store.get_product("dns")
    assert product.status is ProductStatus.FAILED
    assert "gave up after 2 attempts" in product.error and "cannot resolve host" in product.error


def test_malformed_messages_fail_with_a_reason(env):
    _, run, worker, pending = env
    with pytest.raises(Exception, match="list of product id strings"):
        run.call("clik.encode_products", ["p1"])  # a bare string, not a list
    with pytest.raises(Exception, match="list of product id strings"):
        run.call("clik.encode_products", [[1, 2]])
    with pytest.raises(Exception, match="model version name"):
        run.call("clik.reindex", [None])
    assert not pending.waiting(["p", "1"]) and worker.alive()


def test_an_exhibition_is_precomputed_again_when_its_products_vectors_arrive(env, image_root, tiny_bundle):
    from clik import topic_cache

    store, run, worker, _ = env
    token = uuid.uuid4().hex[:8]
    ids = [f"refresh-{token}-{i}" for i in range(3)]
    for i, pid in enumerate(ids):
        store.put_product(pid, str(image_root / f"good{i}.jpg"))
    eid, topic = f"refresh-{token}", {"name": f"refreshed linen {token}"}
    store.put_exhibition(eid, topic, ids)  # written before its products are encoded
    vid = store.get_version(tiny_bundle.version).id
    block_key = f"{store.prefix}b:{vid}:{eid}"
    assert store.r.hget(block_key, "s") is None
    assert set(run(ids).values()) == {ProductStatus.ENCODED}

    def precomputed_now() -> bool:  # nothing read the exhibition: only the worker builds these
        _, stamp, _ = store.block_stamp(eid)
        return (
            store.r.hget(block_key, "s") == stamp.encode()
            and store.get_topic_embedding(tiny_bundle.version, topic_cache.entry_key(topic)) is not None
        )

    wait_for(precomputed_now, 60, "the exhibition precomputed after its vectors arrived", worker.tail)
    name, stamp, block = store.stamped_block(eid)
    assert sorted(block.product_ids) == sorted(ids) and not block.pending
