"""Figures for the hardening work (issue 15): what a hostile client or image host costs.

    python benchmarks/hardening.py [--out hardening.json] [--skip-body]

Run from a checkout's root (its api/ and clik/ are imported): the same script measures the old
code (e.g. an exported main) and the new. Needs Redis on 127.0.0.1:6379 (db 14, a unique
prefix, deleted after). Prints and writes:

* body: a 103 MB JSON body (a list of numbers) sent to PUT /products/x without a key: seconds
  until the answer, its status, and the worst /healthz latency meanwhile (polled every 100 ms);
* drip: one image from a server sending a byte every 0.5 s (default fetch limits): seconds
  the fetching thread is held (capped at 60 s);
* proxy: 45 concurrent GET /products/{id}/image for an origin that takes 4 s: worst /healthz
  and GET /products/{id} latency meanwhile.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

import httpx  # noqa: E402
import redis  # noqa: E402

from tests.support.api_server import ApiServer  # noqa: E402
from tests.support.images import jpeg_bytes  # noqa: E402
from tests.support.services import delete_keys  # noqa: E402
from tests.support.hostile_server import HostileServer  # noqa: E402

STORE_URL = "redis://127.0.0.1:6379/14"
KEY = "bench-key"


def _app(prefix: str, **extra):
    from api.app import create_app
    from api.settings import ApiSettings

    known = set(ApiSettings.model_fields)
    values = dict(
        store_url=STORE_URL,
        store_prefix=prefix,
        broker_url=STORE_URL,
        queue=f"bench-{prefix}",
        api_keys=[KEY],
        preload_model=False,
        device="cpu",
        **extra,
    )
    return create_app(ApiSettings(_env_file=None, **{k: v for k, v in values.items() if k in known}))


class HealthPoller:
    def __init__(self, url: str) -> None:
        self.url, self.worst, self._stop = url, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=120) as http:
            while not self._stop.is_set():
                start = time.monotonic()
                http.get(f"{self.url}/healthz")
                self.worst = max(self.worst, time.monotonic() - start)
                self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(130)


def body_without_key(server: ApiServer, size: int = 103_000_000) -> dict:
    """A list of ~51 M numbers: parsing it builds a large object graph (a single 103 MB string
    parses in a fraction of a second and would hide the cost)."""
    host, port = server.url.removeprefix("http://").split(":")
    payload = b'{"image_url": "a.jpg", "attrs": {"blob": [' + b"0," * ((size - 50) // 2) + b"0]}}"
    sock = socket.create_connection((host, int(port)), timeout=120)
    head = (
        f"PUT /products/x HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()

    def send() -> None:
        try:
            sock.sendall(head)
            view = memoryview(payload)
            for i in range(0, len(view), 1 << 20):
                sock.sendall(view[i : i + (1 << 20)])
        except OSError:
            pass  # the server answered and closed: it would not read the rest

    with HealthPoller(server.url) as poller:
        start = time.monotonic()
        threading.Thread(target=send, daemon=True).start()
        first = sock.recv(200)
        took = time.monotonic() - start
        time.sleep(0.5)
    sock.close()
    return {
        "status_line": first.split(b"\r\n")[0].decode(errors="replace"),
        "seconds_to_answer": round(took, 3),
        "worst_healthz_s": round(poller.worst, 3),
    }


def drip(host: HostileServer, cap_s: float = 60.0) -> dict:
    from clik.image_source import FetchLimits, ImageLoadError, fetch_url

    host.drip_interval_s = 0.5
    outcome: list[str] = []

    def run() -> None:
        try:
            fetch_url(host.url("/drip/1000"), FetchLimits(allow_private_hosts=True))
            outcome.append("fetched")
        except ImageLoadError as exc:
            outcome.append(exc.reason)

    start = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(cap_s)
    held = time.monotonic() - start
    return {"held_s": round(held, 1), "still_fetching_at_cap": t.is_alive(), "outcome": outcome[:1]}


def proxy(server: ApiServer, store, host: HostileServer, n: int = 45) -> dict:
    host.files["slow.jpg"] = jpeg_bytes(5)
    host.slow_s = 4.0
    ids = [f"slow{i}" for i in range(n)]
    for pid in ids:
        store.put_product(pid, host.url("/slow/slow.jpg"))
    store.put_product("plain", "a.jpg")
    with ThreadPoolExecutor(n) as pool, httpx.Client(timeout=120) as http:
        futures = [pool.submit(httpx.get, f"{server.url}/products/{pid}/image", timeout=120) for pid in ids]
        time.sleep(1.0)
        health, other = [], []
        for _ in range(3):
            start = time.monotonic()
            http.get(f"{server.url}/healthz")
            health.append(time.monotonic() - start)
            start = time.monotonic()
            http.get(f"{server.url}/products/plain")
            other.append(time.monotonic() - start)
        codes = [f.result().status_code for f in futures]
    return {
        "worst_healthz_s": round(max(health), 3),
        "worst_get_product_s": round(max(other), 3),
        "statuses": {str(c): codes.count(c) for c in sorted(set(codes))},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="hardening.json")
    parser.add_argument("--skip-body", action="store_true")
    args = parser.parse_args()
    redis.Redis.from_url(STORE_URL).ping()
    from indexer.config import open_store

    prefix = f"bench-hardening-{uuid.uuid4().hex[:8]}:"
    store = open_store(STORE_URL, prefix=prefix)
    host = HostileServer()
    results: dict = {"code": str(Path.cwd())}
    try:
        with ApiServer(_app(prefix, allow_private_hosts=True)) as server:
            if not args.skip_body:
                results["body"] = body_without_key(server)
                print("body:", results["body"], flush=True)
            results["proxy"] = proxy(server, store, host)
            print("proxy:", results["proxy"], flush=True)
        results["drip"] = drip(host)
        print("drip:", results["drip"], flush=True)
    finally:
        host.close()
        store.close()
        delete_keys(STORE_URL, prefix + "*")
        delete_keys(STORE_URL, f"*bench-{prefix}*")
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
