"""clik.image_source against a hostile image host over real HTTP: a total deadline per image,
short bodies as transient errors, the connection made to the address that was checked, every
non-global address refused, no resolved address in error texts, FIFOs refused."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time

import pytest

from clik.image_source import FetchLimits, ImageLoadError, fetch_url, read_file
from tests.support.hostile_server import HostileServer
from tests.support.images import small_jpeg_bytes as jpeg_bytes


@pytest.fixture(scope="module")
def hostile():
    server = HostileServer()
    server.files["a.jpg"] = jpeg_bytes(1)
    yield server
    server.close()


def _limits(**kw) -> FetchLimits:
    # fetch_deadline_s is new: built this way so the test runs (and fails) on code without it
    base = FetchLimits(connect_timeout_s=1.0, read_timeout_s=2.0, allow_private_hosts=True)
    fields = {f.name for f in dataclasses.fields(FetchLimits)}
    return dataclasses.replace(base, **{k: v for k, v in kw.items() if k in fields})


@pytest.mark.parametrize("path", ["/drip/100000", "/drip-headers/x"])
def test_a_dripping_server_is_cut_off_at_the_deadline(hostile, path):
    hostile.drip_interval_s = 0.2  # each read gets a byte well within read_timeout_s
    start = time.monotonic()
    result: list = []

    def run():
        try:
            result.append(fetch_url(hostile.url(path), _limits(fetch_deadline_s=2.0)))
        except ImageLoadError as exc:
            result.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(8)
    took = time.monotonic() - start
    assert not t.is_alive(), f"still fetching {path} after {took:.1f}s"
    [error] = result
    assert isinstance(error, ImageLoadError) and error.transient and "deadline" in error.reason
    assert took < 3.5


def test_a_body_shorter_than_its_content_length_is_transient(hostile):
    with pytest.raises(ImageLoadError) as info:
        fetch_url(hostile.url("/truncate/a.jpg"), _limits())
    assert info.value.transient and "truncated" in info.value.reason


def test_redirect_loops_stop_and_the_host_header_names_the_host(hostile):
    with pytest.raises(ImageLoadError, match="too many redirects"):
        fetch_url(hostile.url("/redirect-loop/0"), _limits())
    hostile.hosts.clear()
    assert fetch_url(hostile.url("/img/a.jpg", host="localhost"), _limits()) == hostile.files["a.jpg"]
    assert hostile.hosts == [f"localhost:{hostile.port}"]


@pytest.mark.parametrize(
    "address",
    [
        "100.100.100.200",  # shared address space 100.64.0.0/10: a cloud metadata service lives here
        "100.64.0.1",
        "0.0.0.0",
        "192.0.0.8",
        "198.18.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "[2002:a9fe:a9fe::]",  # 6to4 of 169.254.169.254
        "[::ffff:127.0.0.1]",
        "[::ffff:a9fe:a9fe]",  # IPv4-mapped
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
        "[64:ff9b:1::1]",
        "[fc00::1]",
        "[fe80::1]",
        "[::1]",
        "[::]",
        "[ff02::1]",
        "[2001:db8::1]",
    ],
)
def test_every_non_global_address_is_refused(address):
    with pytest.raises(ImageLoadError, match="refused address") as info:
        fetch_url(f"http://{address}/a.jpg", FetchLimits(connect_timeout_s=0.5))
    assert not info.value.transient


def test_the_connection_goes_to_the_address_that_was_checked(hostile, monkeypatch):
    """DNS rebinding: the name first resolves to a public address (passes the check), then to
    loopback. The fetch must connect to the checked address, never to the second answer."""
    real = socket.getaddrinfo
    calls = []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        calls.append(host)
        address = "93.184.215.14" if len(calls) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    hostile.hits.clear()
    with pytest.raises(ImageLoadError) as info:  # 93.184.215.14 is not reachable from here
        fetch_url(f"http://rebind.test:{hostile.port}/img/a.jpg", FetchLimits(connect_timeout_s=0.5))
    assert info.value.transient
    assert sum(hostile.hits.values()) == 0, "connected to the rebound (loopback) address"


def test_errors_name_the_host_not_the_address_it_resolved_to():
    with pytest.raises(ImageLoadError) as info:
        fetch_url("http://localhost:9/a.jpg", FetchLimits())
    assert "localhost" in info.value.reason and "127.0.0.1" not in info.value.reason


def test_a_fifo_under_a_file_root_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    result: list = []

    def run():
        try:
            result.append(read_file(fifo, FetchLimits(file_roots=(str(tmp_path),))))
        except ImageLoadError as exc:
            result.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(3)
    if t.is_alive():  # unblock the reader so the test process can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    [error] = result
    assert isinstance(error, ImageLoadError) and "not a regular file" in error.reason
