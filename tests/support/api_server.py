"""The API as the tests run it: served by uvicorn on a free port in a thread of the test process,
settings for the test Redis, and an encode queue that encodes in the caller's thread."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import httpx

from tests.support.services import BROKER_URL, STORE_URL

API_KEY = "test-key-" + uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiServer:
    """uvicorn serving one app in a thread of the test process."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
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
    """ApiSettings on the test Redis under prefix (no .env file read), private hosts allowed."""
    from api.settings import ApiSettings

    values = dict(
        store_url=STORE_URL,
        store_prefix=prefix,
        broker_url=BROKER_URL,
        queue=f"clik-api-test-{prefix.strip(':')}",
        api_keys=[API_KEY],
        allow_private_hosts=True,
        device="cpu",
        catalogue_min_rebuild_s=0.0,
    )
    values.update(overrides)
    return ApiSettings(_env_file=None, **values)


class InlineEncodeQueue:
    """Encodes at once, in the caller's thread (an EncodeQueue needs only submit)."""

    def __init__(self, store, root) -> None:
        from clik.image_source import FetchLimits
        from worker.encode import EncoderCache

        self.store, self.encoders = store, EncoderCache(device="cpu")
        self.limits = FetchLimits(file_roots=(str(root),))
        self.submitted: list[list[str]] = []

    def submit(self, product_ids: list[str]) -> None:
        from worker.encode import encode_products

        self.submitted.append(list(product_ids))
        encode_products(self.store, product_ids, self.encoders, self.limits)
