"""Real things for the API tests: a tiny exported bundle (random weights), JPEGs served by a
local HTTP server, the real Redis (store db 15 / broker db 13, unique prefix and queue), a real
Celery worker process, and the API served by uvicorn on a free port, called over HTTP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api_server import ApiServer, api_settings
from tests.support.bundles import tiny_bundle
from tests.support.http_folder import serve_folder
from tests.support.images import jpeg_bytes
from tests.support.services import BROKER_URL, STORE_URL, delete_keys, redis_or_skip

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def api_bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("apibundle") / "tiny", seed=0)


@pytest.fixture(scope="session")
def api_bundle2(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("apibundle2") / "tiny2", seed=1)


@pytest.fixture(scope="session")
def image_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """(base URL, folder): files in the folder are served over HTTP on 127.0.0.1."""
    root = tmp_path_factory.mktemp("served")
    for i in range(12):
        (root / f"img{i}.jpg").write_bytes(jpeg_bytes(i))
    (root / "notes.jpg").write_bytes(b"plain text, not an image\n" * 20)

    server = serve_folder(root)
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


class Env:
    """A store prefix with an active version, a worker consuming its queue, the API on top."""

    def __init__(self, prefix: str, queue: str, server: ApiServer, store, bundle, images: str) -> None:
        self.prefix, self.queue, self.server, self.store = prefix, queue, server, store
        self.bundle, self.images = bundle, images
        self.http = server.client()

    def wait_encoded(self, product_ids: list[str], timeout: float = 90) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        pending = set(product_ids)
        out: dict[str, dict] = {}
        while pending:
            for pid in list(pending):
                body = self.http.get(f"/products/{pid}").json()
                if body["status"] != "pending":
                    out[pid] = body
                    pending.discard(pid)
            if pending and time.monotonic() > deadline:
                raise AssertionError(f"still pending after {timeout}s: {sorted(pending)}")
            time.sleep(0.1)
        return out


@pytest.fixture(scope="module")
def env(api_bundle, image_server, tmp_path_factory) -> Iterator[Env]:
    redis_or_skip()
    from api.app import create_app
    from indexer.config import open_store

    token = uuid.uuid4().hex[:10]
    prefix, queue = f"clik-apitest-{token}:", f"clik-api-test-clik-apitest-{token}"
    store = open_store(STORE_URL, prefix=prefix)
    store.register_version(api_bundle.version, api_bundle.embed_dim, bundle_uri=str(api_bundle.path))
    store.activate(api_bundle.version)

    worker_env = {
        **os.environ,
        "CLIK_BROKER_URL": BROKER_URL,
        "CLIK_QUEUE": queue,
        "CLIK_STORE_URL": STORE_URL,
        "CLIK_STORE_PREFIX": prefix,
        "CLIK_DEVICE": "cpu",
        "CLIK_ALLOW_PRIVATE_HOSTS": "true",
        "CLIK_BATCH_SIZE": "8",
        "CLIK_MAX_RETRIES": "1",
        "CLIK_RETRY_BACKOFF_S": "0.2",
    }
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=worker_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "ready." not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"celery worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        app = create_app(api_settings(prefix, queue=queue))
        with ApiServer(app) as server:
            e = Env(prefix, queue, server, store, api_bundle, image_server[0])
            yield e
            e.http.close()
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        store.close()
        delete_keys(STORE_URL, prefix + "*")
        delete_keys(BROKER_URL, f"*{queue}*")


@pytest.fixture
def uid() -> str:
    """A short unique id part, so tests sharing a store never touch each other's records."""
    return uuid.uuid4().hex[:8]
