"""Test plumbing: a real Celery worker process, and a local HTTP server standing in for the internet.

``Internet`` is a plain HTTP server on 127.0.0.1 that the worker reaches as an HTTP *proxy*
(``http_proxy``): the worker fetches URLs on a public address (``PUBLIC``), so the address
checks in clik.image_source run exactly as in production (a loopback URL is still refused),
while the bytes come from this server. It serves images, slow images, hangs, 404s, oversize
bodies and redirects to private addresses, and counts hits per path.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis

from tests.support.services import BROKER_URL, delete_keys

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = "93.184.215.14"  # a public address literal: no DNS needed, never contacted (proxied)


class Internet:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.delay_s = 0.0  # added to every /img/ request
        self.slow_first_s = 3.0  # /slow/<name>: the first request waits this long
        self.slow_started = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = urllib.parse.urlsplit(self.path).path  # absolute URI when proxied
                with outer._lock:
                    outer.hits[path] += 1
                    first = outer.hits[path] == 1
                try:
                    outer._serve(self, path, first)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{PUBLIC}{path}"

    def _serve(self, h: BaseHTTPRequestHandler, path: str, first: bool) -> None:
        kind, _, name = path.strip("/").partition("/")
        if kind == "img" and name in self.files:
            time.sleep(self.delay_s)
            return self._send(h, 200, self.files[name])
        if kind == "slow" and name in self.files:
            if first:
                self.slow_started.set()
                time.sleep(self.slow_first_s)
            return self._send(h, 200, self.files[name])
        if kind == "hang":
            time.sleep(30)
            return self._send(h, 200, b"")
        if kind == "redirect-private":
            h.send_response(302)
            h.send_header("Location", "http://10.1.2.3/image.jpg")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        if kind == "big":
            return self._send(h, 200, b"\xff\xd8" + b"\x00" * int(name))
        return self._send(h, 404, b"not found")

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, body: bytes) -> None:
        h.send_response(code)
        h.send_header("Content-Type", "image/jpeg" if code == 200 else "text/plain")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class CeleryWorker:
    """``celery -A worker.app worker --pool=solo`` with CLIK_* settings, in its own process group."""

    def __init__(self, settings: dict[str, str], queue: str, log_dir: Path, extra_env: dict | None = None):
        # Only this test's CLIK_ settings: nothing the developer (or another test) exported.
        base = {k: v for k, v in os.environ.items() if not k.startswith("CLIK_")}
        self.env = {**base, **{f"CLIK_{k.upper()}": str(v) for k, v in settings.items()}, **(extra_env or {})}
        self.queue = queue
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"worker-{self.starts}.log"

    def start(self, timeout: float = 60) -> None:
        self.starts += 1
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
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
                self.queue,
                "-n",
                f"{self.queue}-{self.starts}@%h",
                "-l",
                "info",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while "ready." not in self.log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"celery worker did not start:\n{self.tail()}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no acknowledgement."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_text()[-n:]


def wait_for(predicate, timeout: float, what: str, on_fail=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{on_fail()}")
        time.sleep(0.1)


def cleanup_broker(client, queue: str, amqp: bool) -> None:
    """Drop what a test's Celery client and worker left on the broker: the queue, its
    unacknowledged messages, and kombu's bookkeeping once nothing else uses the database."""
    if amqp:
        with client.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    client.close()
    broker = redis.Redis.from_url(BROKER_URL)
    # kombu's Redis transport keeps unacknowledged messages of every queue in one hash, and any
    # worker on this database puts visible ones back on their queue: drop this queue's first.
    for tag, raw in broker.hscan_iter("unacked"):
        try:
            _, exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if queue in (exchange, routing_key):
            broker.hdel("unacked", tag)
            broker.zrem("unacked_index", tag)
    delete_keys(broker, f"*{queue}*")
    # Results are kept under celery-task-meta-<id>; the client tracked none, the worker wrote
    # some for tasks it queued itself: they expire (result_expires), and we drop what we know.
    # kombu's own bookkeeping keys; dropped when nothing else uses this database
    if set(broker.scan_iter(count=1000)) <= {
        b"_kombu.binding_deadlines",
        b"unacked",
        b"unacked_index",
        b"unacked_mutex",
    }:
        for key in (b"_kombu.binding_deadlines", b"unacked", b"unacked_index", b"unacked_mutex"):
            broker.delete(key)
