"""A folder served over local HTTP (quiet, on a free port, in a daemon thread): the image server
of the tests and benchmarks that fetch real images by URL."""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve_folder(root: str | Path) -> ThreadingHTTPServer:
    """Started server; its URL is http://127.0.0.1:{server.server_address[1]}. Stop it with
    ``server.shutdown(); server.server_close()``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
