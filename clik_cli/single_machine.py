"""The single-machine stack: the API over the embedded store with encoding in a background thread
(no Redis, no Celery). `clik serve` on an embedded store and `clik demo` use it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from indexer.store import VectorStore


def inprocess_queue(store: VectorStore, batch_size: int = 16, roots: tuple[Path, ...] = (), on_report=None):
    """An InProcessEncodeQueue configured from the worker settings (file roots, limits, device),
    also reading local images under ``roots`` and under the roots the store recorded."""
    from worker.encode import EncoderCache
    from worker.inprocess import InProcessEncodeQueue
    from worker.settings import WorkerSettings

    settings = WorkerSettings()
    encoders = EncoderCache(settings.device, batch_size, settings.max_encoders, **settings.encoder_options())
    return InProcessEncodeQueue(
        store,
        encoders,
        fetch_limits(store, roots),
        batch_size=batch_size,
        decode_threads=settings.decode_threads,
        on_report=on_report,
    )


class EncodeCounter:
    """Products the in-process queue finished (encoded, failed or gone): for progress bars."""

    def __init__(self) -> None:
        self.done = 0

    def __call__(self, report) -> None:
        self.done += len(report.encoded) + len(report.failed) + len(report.missing)


@dataclass
class RunningServer:
    """A uvicorn server on a background thread (the demo keeps printing while it serves)."""

    server: object
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_in_thread(app, host: str, port: int, timeout_s: float = 30.0) -> RunningServer:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="clik-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the API could not start on {host}:{port} (port in use?)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start within {timeout_s:.0f}s")
        time.sleep(0.05)
    return RunningServer(server, thread, f"http://{host}:{port}")


def fetch_limits(store: VectorStore, roots: tuple[Path, ...] | list[Path] = ()):
    """The worker's fetch limits with local reads allowed under ``roots`` and under the folders
    the store recorded for its catalogue (on top of CLIK_FILE_ROOTS)."""
    from indexer.store_settings import stored_file_roots
    from worker.settings import WorkerSettings

    return WorkerSettings().fetch_limits([*stored_file_roots(store), *(str(r) for r in roots)])
