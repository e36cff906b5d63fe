"""Redis servers of our own, started and stopped by the caller: a real Redis Cluster of three
masters for the tests (and the cluster benchmarks), and a single private server for benchmarks
that must not load the shared one.

Each node is a ``redis-server --cluster-enabled yes`` on a free port (its cluster bus on
port + 10000 free too), with its config file and data in a temporary folder; ``redis-cli
--cluster create ... --cluster-replicas 0 --cluster-yes`` assigns the 16,384 slots. Nothing
persists: ``--save ""``, no AOF. Without redis-server the tests skip on a laptop and fail under
CLIK_REQUIRE_SERVICES=1 (tests/services.py).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import redis

from tests.support.services import service_missing

MASTERS = 3


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(n: int) -> list[int]:
    """n ports that are free, each with its cluster bus port (+10000) free as well."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 < 65536 and _port_free(port + 10000) and port not in ports:
            ports.append(port)
    return ports


def _wait(check, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with suppress(redis.RedisError, OSError):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"Redis: {what} within {timeout_s} s")


def _start_node(server: str, port: int, node: Path, *extra: str) -> subprocess.Popen:
    node.mkdir(parents=True)
    with (node / "log").open("wb") as log:
        return subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(node),
                "--save",
                "",
                "--appendonly",
                "no",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:  # only the nodes started here, by their own handles
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """One private redis-server; yields its URL."""
    server = shutil.which("redis-server")
    if not server:
        service_missing("redis-server is needed to start a private Redis")
    (port,) = _free_ports(1)
    proc = _start_node(server, port, folder / str(port))
    try:
        client = redis.Redis(port=port, socket_connect_timeout=1)
        _wait(client.ping, "the server did not answer")
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop([proc])


@contextmanager
def redis_cluster(folder: Path) -> Iterator[str]:
    """A running three-master cluster; yields its store URL (``redis+cluster://``)."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        service_missing("redis-server and redis-cli are needed to start a local Redis Cluster")
    ports = _free_ports(MASTERS)
    procs: list[subprocess.Popen] = []
    try:
        for port in ports:
            node = folder / str(port)
            procs.append(
                _start_node(
                    server,
                    port,
                    node,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node / "nodes.conf"),
                    "--cluster-node-timeout",
                    "5000",
                )
            )
        clients = [redis.Redis(port=p, socket_connect_timeout=1) for p in ports]
        for c in clients:
            _wait(c.ping, "a node did not answer")
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in ports],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for c in clients:
            _wait(lambda c=c: c.cluster("info")["cluster_state"] == "ok", "the cluster did not come up")
        for c in clients:
            c.close()
        yield f"redis+cluster://127.0.0.1:{ports[0]}/0"
    finally:
        _stop(procs)
