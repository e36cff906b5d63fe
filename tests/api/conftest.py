"""Real things for the API tests: a tiny exported bundle (random weights), JPEGs served by a
local HTTP server, the real Redis (store db 15 / broker db 13, unique prefix and queue), a real
Celery worker process, and the API served by uvicorn on a free port, called over HTTP.
"""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from tests.http_folder import serve_folder
from tests.services import service_missing

ROOT = Path(__file__).resolve().parents[2]
STORE_URL = "redis://127.0.0.1:6379/15"
BROKER_URL = "redis://127.0.0.1:6379/13"
API_KEY = "test-key-" + uuid.uuid4().hex[:8]


def redis_or_skip() -> None:
    try:
        redis.Redis.from_url(STORE_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        service_missing(f"Redis unreachable ({exc})")


def delete_keys(url: str, pattern: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=pattern, count=1000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i:i + 1000])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jpeg_bytes(seed: int, size=(64, 48)) -> bytes:
    """A small real JPEG with random coloured rectangles (different seeds, different images)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(5):
        x0, y0 = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
        draw.rectangle([int(x0), int(y0), int(x0 + 20), int(y0 + 16)],
                       fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_bundle(directory: Path, seed: int):
    import torch

    import clik

    torch.manual_seed(seed)
    model = clik.ClikModel(clik.get_model_config("clik-tiny-test"), load_weights=False).eval()
    return clik.export_bundle(model, clik.create_tokenizer(model), directory)


@pytest.fixture(scope="session")
def api_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("apibundle") / "tiny", seed=0)


@pytest.fixture(scope="session")
def api_bundle2(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("apibundle2") / "tiny2", seed=1)


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


class ApiServer:
    """uvicorn serving one app in a thread of the test process."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ApiServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def client(self, key: str | None = API_KEY, timeout: float = 60) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def api_settings(prefix: str, **overrides):
    from api.settings import ApiSettings

    values = dict(store_url=STORE_URL, store_prefix=prefix, broker_url=BROKER_URL,
                  queue=f"clik-api-test-{prefix.strip(':')}", api_keys=[API_KEY],
                  allow_private_hosts=True, device="cpu", catalogue_min_rebuild_s=0.0)
    values.update(overrides)
    return ApiSettings(_env_file=None, **values)


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

    worker_env = {**os.environ, "CLIK_BROKER_URL": BROKER_URL, "CLIK_QUEUE": queue,
                  "CLIK_STORE_URL": STORE_URL, "CLIK_STORE_PREFIX": prefix, "CLIK_DEVICE": "cpu",
                  "CLIK_ALLOW_PRIVATE_HOSTS": "true", "CLIK_BATCH_SIZE": "8", "CLIK_MAX_RETRIES": "1",
                  "CLIK_RETRY_BACKOFF_S": "0.2"}
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool=solo", "--concurrency=1",
         "-Q", queue, "-n", f"{queue}@%h", "-l", "info", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
