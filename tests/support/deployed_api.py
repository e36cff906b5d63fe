"""The API as deployed, for the tests and benchmarks that need it so: uvicorn serving
api.app:app_from_env in its own process group with several worker processes, configured by
CLIK_* environment variables; started, waited for and stopped the same way everywhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def start_api(
    env: Mapping[str, str],
    port: int,
    workers: int,
    log_path: Path | None = None,
    extra_args: Sequence[str] = (),
) -> subprocess.Popen:
    """The API as deployed: uvicorn serving api.app:app_from_env with `workers` processes on
    127.0.0.1:`port`, configured by `env` (CLIK_* settings), in its own process group (stop()).
    Output goes to `log_path` when given (what wait_ready shows if it never becomes ready)."""
    log = open(log_path, "w") if log_path is not None else None
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "api.app:app_from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                "--no-access-log",
                *extra_args,
            ],  # as clik_cli/commands/serve.py starts it
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT if log is not None else None,
            start_new_session=True,
        )
    finally:
        if log is not None:
            log.close()  # the child holds its own copy


def wait_ready(
    url: str, proc: subprocess.Popen, path: str = "/readyz", timeout: float = 600, log_path: Path | None = None
) -> None:
    """Until GET `url``path` answers 200. Generous by default: every uvicorn worker loading torch
    and the model took minutes on a busy 2-core box. Raises (and stops `proc`) if the server
    exits or the time runs out."""
    deadline, last = time.monotonic() + timeout, ""
    while True:
        try:
            r = httpx.get(url + path, timeout=5)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:300]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            tail = log_path.read_text()[-3000:] if log_path is not None and log_path.exists() else ""
            raise RuntimeError(f"the API did not become ready ({last}){chr(10) + tail if tail else ''}")
        time.sleep(0.3)


def stop(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM to the process group (uvicorn and its workers), SIGKILL after `grace_s`."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
