"""A hostile image host on 127.0.0.1 for the hardening tests: it drips bytes, cuts bodies short,
redirects in loops or to refused addresses, and records what it was asked (path, Host header).

Paths (``/<kind>/<arg>``):
  /img/<name>            a JPEG (``files[name]``) at once
  /drip/<n>              Content-Length n, then one byte every ``drip_interval_s``
  /drip-headers/x        the status line and headers one byte every ``drip_interval_s``
  /truncate/<name>       declares the full length of ``files[name]``, sends half, closes
  /slow/<name>           ``files[name]`` dripped over ``slow_s`` seconds (64 pieces)
  /redirect-loop/<n>     302 to /redirect-loop/<n+1>, forever
  /redirect-to/x?u=URL   302 to URL
"""

from __future__ import annotations

import collections
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HostileServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.hosts: list[str] = []  # Host header of every request
        self.drip_interval_s = 0.5
        self.slow_s = 4.0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = urllib.parse.urlsplit(self.path)
                with outer._lock:
                    outer.hits[parts.path] += 1
                    outer.hosts.append(self.headers.get("Host", ""))
                try:
                    outer._serve(self, parts)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # the client gave up: that is what a deadline does

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def _serve(self, h: BaseHTTPRequestHandler, parts: urllib.parse.SplitResult) -> None:
        kind, _, arg = parts.path.strip("/").partition("/")
        if kind == "img" and arg in self.files:
            return self._head(h, 200, len(self.files[arg]), self.files[arg])
        if kind == "drip":
            self._head(h, 200, int(arg))
            for _ in range(int(arg)):
                h.wfile.write(b"\xff")
                h.wfile.flush()
                time.sleep(self.drip_interval_s)
            return None
        if kind == "drip-headers":
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Slow: " + b"a" * 10_000:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(self.drip_interval_s)
            return None
        if kind == "truncate" and arg in self.files:
            body = self.files[arg]
            self._head(h, 200, len(body))
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return None
        if kind == "slow" and arg in self.files:
            body = self.files[arg]
            self._head(h, 200, len(body))
            step = max(1, len(body) // 64)
            for start in range(0, len(body), step):
                h.wfile.write(body[start : start + step])
                h.wfile.flush()
                time.sleep(self.slow_s / 64)
            return None
        if kind == "redirect-loop":
            return self._redirect(h, f"/redirect-loop/{int(arg or 0) + 1}")
        if kind == "redirect-to":
            return self._redirect(h, urllib.parse.parse_qs(parts.query)["u"][0])
        return self._head(h, 404, 9, b"not found")

    @staticmethod
    def _head(h: BaseHTTPRequestHandler, code: int, length: int, body: bytes | None = None) -> None:
        h.send_response(code)
        h.send_header("Content-Type", "image/jpeg" if code == 200 else "text/plain")
        h.send_header("Content-Length", str(length))
        h.end_headers()
        if body is not None:
            h.wfile.write(body)

    @staticmethod
    def _redirect(h: BaseHTTPRequestHandler, location: str) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
