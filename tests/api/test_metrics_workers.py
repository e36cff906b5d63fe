"""/metrics sums every uvicorn worker process (prometheus_client multiprocess mode): two real
worker processes behind one port, requests spread over them on fresh connections, and whichever
process answers a scrape reports all of them."""

from __future__ import annotations

import os
import re
import time
import uuid

import httpx
import pytest

from tests.support.api_server import free_port
from tests.support.deployed_api import start_api, stop
from tests.support.services import BROKER_URL, STORE_URL, delete_keys, redis_or_skip
from tests.support.worker_harness import ROOT

pytestmark = pytest.mark.redis

HEALTHZ = re.compile(
    r'^clik_api_request_seconds_count\{method="GET",route="/healthz",status="200"\} ([0-9.e+]+)$', re.M
)


def test_metrics_are_summed_over_two_worker_processes(tmp_path):
    redis_or_skip()
    from clik_cli.commands.serve import metrics_folder

    prefix = f"clik-mptest-{uuid.uuid4().hex[:8]}:"
    env = {
        **os.environ,
        "CLIK_STORE_URL": STORE_URL,
        "CLIK_STORE_PREFIX": prefix,
        "CLIK_BROKER_URL": BROKER_URL,
        "CLIK_QUEUE": f"clik-mptest-{prefix}",
        "CLIK_DEVICE": "cpu",
        "PYTHONPATH": str(ROOT),
    }
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"left by an earlier run")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    folder = metrics_folder(env)  # what `clik serve --workers 2` does before starting them
    assert folder == str(tmp_path / "metrics") and not list((tmp_path / "metrics").glob("*.db"))
    port = free_port()
    proc = start_api(env, port, 2, tmp_path / "api.log", extra_args=("--timeout-worker-healthcheck", "300"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 400  # two processes importing torch on a busy box: minutes
        while True:  # both processes up: each one's metric files are there
            try:
                if (
                    httpx.get(url + "/healthz", timeout=2).status_code == 200
                    and len({p.stem.rsplit("_", 1)[1] for p in (tmp_path / "metrics").glob("histogram_*.db")}) >= 2
                ):
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.3)
        time.sleep(1.0)  # let the second process finish its start-up
        for _ in range(120):  # a new connection each: the kernel hands them to either process
            assert httpx.get(url + "/healthz", timeout=10).status_code == 200
        served = 120
        time.sleep(0.5)  # a request is counted just after its response went out
        counts = set()
        for _ in range(8):
            text = httpx.get(url + "/metrics", timeout=10).text
            counts.add(float(HEALTHZ.search(text).group(1)))
        # every scrape, answered by either process, counts every request (the start-up probes too)
        assert len(counts) == 1 and counts.pop() >= served
        pids = {p.stem.rsplit("_", 1)[1] for p in (tmp_path / "metrics").glob("histogram_*.db")}
        assert len(pids) >= 2
    finally:
        stop(proc)
        delete_keys(STORE_URL, prefix + "*")
