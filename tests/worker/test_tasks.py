"""A real Celery worker process (solo pool) on the real Redis: broker, results and store.

Broker and results live in Redis db 13 under a queue and worker name unique to this session;
the store in db 15 under a unique prefix. Everything is deleted and the worker stopped after.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from indexer.config import RedisStoreConfig
from indexer.records import ProductStatus
from indexer.redis_store import RedisStore
from clik.image_source import content_hash

pytestmark = pytest.mark.redis

BROKER_URL = "redis://127.0.0.1:6379/13"  # also the result backend
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
STORE_URL = "redis://127.0.0.1:6379/15"
ROOT = Path(__file__).resolve().parents[2]


def _delete(client: redis.Redis, pattern: str) -> None:
    keys = list(client.scan_iter(match=pattern, count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i:i + 1000])


def _amqp_reachable() -> str | None:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError as exc:
        return f"RabbitMQ unreachable ({exc})"
    return None


@pytest.fixture(scope="module", params=["redis", "amqp"])
def env(request, tmp_path_factory, tiny_bundle, image_root):
    try:
        redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis unreachable ({exc})")
    if request.param == "amqp" and (reason := _amqp_reachable()):
        pytest.skip(reason)
    broker_url = AMQP_URL if request.param == "amqp" else BROKER_URL
    from worker.app import make_app
    from worker.settings import WorkerSettings

    token = uuid.uuid4().hex[:10]
    queue, prefix = f"clik-test-{token}", f"clik-test-{token}:"
    settings = {
        "broker_url": broker_url, "result_backend": BROKER_URL, "queue": queue,
        "store_url": STORE_URL, "store_prefix": prefix, "file_roots": json.dumps([str(image_root)]),
        "device": "cpu", "batch_size": "8", "max_retries": "1", "retry_backoff_s": "0.2",
    }
    store = RedisStore(RedisStoreConfig(url=STORE_URL, prefix=prefix))
    store.register_version(tiny_bundle.version, tiny_bundle.embed_dim, bundle_uri=str(tiny_bundle.path))
    store.activate(tiny_bundle.version)

    worker_env = {**os.environ, **{f"CLIK_{k.upper()}": str(v) for k, v in settings.items()}}
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool=solo", "--concurrency=1",
         "-Q", queue, "-n", f"{queue}@%h", "-l", "info", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while "ready." not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"celery worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)

    client = make_app(WorkerSettings(**{**settings, "file_roots": [str(image_root)]}, _env_file=None))
    task_ids: list[str] = []

    def run(product_ids: list[str], timeout: float = 60) -> dict:
        result = client.send_task("clik.encode_products", args=[product_ids], queue=queue)
        task_ids.append(result.id)
        try:
            return result.get(timeout=timeout)
        except Exception:
            print(log_path.read_text()[-4000:])
            raise

    yield store, run, proc
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()
    if request.param == "amqp":
        with client.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    client.close()
    store.close()
    _delete(redis.Redis.from_url(STORE_URL), prefix + "*")
    broker = redis.Redis.from_url(BROKER_URL)
    _delete(broker, f"*{queue}*")
    for tid in task_ids:
        broker.delete(f"celery-task-meta-{tid}")
    # kombu's own bookkeeping key; dropped when nothing else uses this database
    if set(broker.scan_iter(count=1000)) <= {b"_kombu.binding_deadlines"}:
        broker.delete("_kombu.binding_deadlines")


def test_batch_encodes_good_images_and_fails_each_bad_one(env, image_root, outside_file, tiny_bundle):
    store, run, proc = env
    v = tiny_bundle.version
    sources = {
        "g0": image_root / "good0.jpg", "g1": image_root / "good1.jpg", "g2": image_root / "good2.jpg",
        "g0-copy": image_root / "copy_of_good0.jpg",
        "corrupt": image_root / "corrupt.jpg", "text": image_root / "notes.jpg",
        "missing": image_root / "nope.jpg", "outside": outside_file, "loopback": "http://127.0.0.1:9/a.jpg",
    }
    for pid, src in sources.items():
        store.put_product(pid, str(src))
    result = run(list(sources))

    assert result["version"] == v
    assert sorted(result["encoded"]) == ["g0", "g0-copy", "g1", "g2"]
    assert result["new_vectors"] == 3  # g0 and its copy share one vector
    expected = {"corrupt": "corrupt image", "text": "not an image", "missing": "file not found",
                "outside": "outside the allowed roots", "loopback": "refused address 127.0.0.1"}
    assert set(result["failed"]) == set(expected)
    for pid, words in expected.items():
        product = store.get_product(pid)
        assert product.status is ProductStatus.FAILED and words in product.error, (pid, product.error)
    for pid in ("g0", "g0-copy", "g1", "g2"):
        product = store.get_product(pid)
        assert product.status is ProductStatus.ENCODED
        assert product.image_hash == content_hash(Path(sources[pid]).read_bytes())
        assert store.has_vector(v, product.image_hash)
    assert store.get_product("g0").image_hash == store.get_product("g0-copy").image_hash

    # Re-running (a redelivered task): nothing is encoded twice, the statuses stay.
    again = run(["g0", "g1", "g2", "g0-copy", "corrupt"])
    assert again["new_vectors"] == 0 and again["reused"] == 4
    assert store.get_product("g1").status is ProductStatus.ENCODED
    assert proc.poll() is None


def test_transient_errors_retry_only_those_products_then_fail(env, image_root):
    store, run, _ = env
    # .invalid never resolves: a DNS failure is transient, so it is retried (max_retries=1) first
    store.put_product("dns", f"http://images-{uuid.uuid4().hex[:6]}.invalid/a.jpg")
    store.put_product("good", str(image_root / "good3.jpg"))
    result = run(["dns", "good"])
    # the final attempt only carried the transient product; "good" was encoded by the first
    assert list(result["failed"]) == ["dns"] and "gave up after 2 attempts" in result["failed"]["dns"]
    assert store.get_product("good").status is ProductStatus.ENCODED
    product = store.get_product("dns")
    assert product.status is ProductStatus.FAILED and "cannot resolve host" in product.error
