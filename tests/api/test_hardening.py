"""The API under hostile clients and a hostile image host, over real HTTP (uvicorn), real Redis and
a real worker: body limits and the key checked before the body, 422s that echo nothing large,
no 500 for odd strings (fuzzed), the image proxy off the request pool, ids in a safe alphabet,
/readyz seeing the broker, and no internal address in errors."""

from __future__ import annotations

import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.support.api_server import API_KEY, ApiServer, api_settings, free_port
from tests.support.images import jpeg_bytes
from tests.support.services import STORE_URL, delete_keys, redis_or_skip
from tests.support.hostile_server import HostileServer

pytestmark = pytest.mark.redis


def _raw_request(url: str, head: str, body_prefix: bytes, timeout: float = 3.0) -> tuple[float, bytes]:
    """Send a request head and the start of its body only; (seconds to the first response
    bytes, those bytes). A server that waits for the whole body never answers."""
    host, port = url.removeprefix("http://").split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(head.encode() + b"\r\n\r\n" + body_prefix)
        try:
            data = s.recv(65536)
        except TimeoutError:
            return time.monotonic() - start, b""
        return time.monotonic() - start, data


def _healthz_ms(url: str) -> float:
    start = time.monotonic()
    assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
    return (time.monotonic() - start) * 1000


def test_a_huge_body_without_a_key_is_refused_before_it_is_read(env):
    head = "PUT /products/x HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 103000000"
    took, data = _raw_request(env.server.url, head, b'{"image_url": "' + b"a" * 100_000)
    assert data.startswith(b"HTTP/1.1 401"), (took, data[:200])
    assert took < 1.0
    assert _healthz_ms(env.server.url) < 1000


def test_a_huge_body_with_a_key_is_413_from_its_content_length(env):
    head = (
        f"PUT /products/x HTTP/1.1\r\nHost: test\r\nX-API-Key: {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: 103000000"
    )
    took, data = _raw_request(env.server.url, head, b'{"image_url": "')
    assert data.startswith(b"HTTP/1.1 413"), (took, data[:200])
    assert b"CLIK_MAX_BODY_BYTES" in data or b"at most" in data
    assert took < 1.0


def test_a_streamed_body_without_content_length_is_counted(env, uid):
    def chunks():
        yield b'{"image_url": "a.jpg", "attrs": {"blob": "'
        for _ in range(40):  # 10 MB in all, no Content-Length (chunked)
            yield b"x" * 250_000
        yield b'"}}'

    r = env.http.put(f"/products/{uid}", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text[:300]
    assert "at most" in r.json()["detail"]
    assert env.http.get(f"/products/{uid}").status_code == 404  # nothing written


def test_a_422_does_not_echo_a_large_input(env, uid):
    r = env.http.put(f"/products/{uid}", json={"image_url": "a" * 1_000_000})
    assert r.status_code == 422
    assert len(r.content) < 10_000, len(r.content)
    assert "image_url" in r.text


def test_uploads_have_their_own_larger_limit(env):
    files = [("images", ("big.jpg", b"\xff\xd8" + b"\x00" * 5_000_000, "image/jpeg"))]
    r = env.http.post("/rank/upload", data={"topic": json.dumps({"name": "x"})}, files=files)
    assert r.status_code == 200, r.text[:300]  # over the JSON limit, under the upload one
    assert r.json()["errors"][0]["reason"]


def test_lone_surrogates_are_422_not_500(env, uid):
    for body in (
        {"image_url": "\ud800"},
        {"image_url": "a.jpg", "attrs": {"k": "\ud800"}},
        {"image_url": "a.jpg", "attrs": {"\udfff": 1}},
    ):
        r = env.http.put(f"/products/{uid}", content=json.dumps(body), headers={"content-type": "application/json"})
        assert r.status_code == 422, (body, r.status_code, r.text[:300])
        r.json()
    r = env.http.put(
        f"/exhibitions/{uid}",
        content=json.dumps({"topic": {"name": "\ud800"}}),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text[:300]
    assert env.http.get(f"/products/{uid}").status_code == 404


_ODD = st.one_of(
    st.sampled_from(
        [
            "\ud800",
            "\udfff",
            "a\ud800b",
            "\x00",
            "\u2028",
            "\ufeff",
            "",
            " ",
            "/",
            "../x",
            "\U0010ffff",
            "%00",
            "x" * 600,
            "y" * 200_000,
            "\r\n",
            "\\u0000",
        ]
    ),
    st.text(st.characters(categories=["Cs", "Cc", "Zs", "Co", "Lo"]), max_size=20),
)


def _bodies(odd: st.SearchStrategy) -> dict[str, st.SearchStrategy]:
    topic = st.fixed_dictionaries({}, optional={"name": odd, "desc": odd, "kwds": st.one_of(odd, st.lists(odd))})
    product = st.fixed_dictionaries({"image_url": odd}, optional={"attrs": st.dictionaries(odd, odd, max_size=2)})
    return {
        "PUT /products/{id}": product,
        "PUT /products": st.fixed_dictionaries(
            {"products": st.lists(st.fixed_dictionaries({"product_id": odd, "image_url": odd}), min_size=1, max_size=3)}
        ),
        "PUT /exhibitions/{id}": st.fixed_dictionaries(
            {"topic": topic}, optional={"product_ids": st.lists(odd, max_size=3)}
        ),
        "POST /rank": st.fixed_dictionaries({"topic": topic, "image_urls": st.lists(odd, min_size=1, max_size=2)}),
    }


def test_fuzz_every_json_route_with_odd_strings(env):
    """hypothesis puts lone surrogates, NULs, controls and huge strings into every JSON route
    (bodies, path ids, the upload form's topic): never a 5xx, always a JSON answer."""
    from urllib.parse import quote

    http = env.http
    bodies = _bodies(_ODD)

    def check(r: httpx.Response) -> None:
        assert r.status_code < 500, (r.request.method, r.request.url, r.status_code, r.text[:300])
        if r.status_code >= 400 or r.status_code in (200, 202):  # (a 307 to a canonical path has no body)
            r.json()

    @given(route=st.sampled_from(sorted(bodies)), data=st.data(), ident=_ODD)
    @settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(route, data, ident):
        body = data.draw(bodies[route])
        method, path = route.split(" ")
        # surrogates cannot be UTF-8 encoded into a URL: send their (invalid) UTF-8 form
        pid = quote(ident[:600].encode("utf-8", "surrogatepass") or b"x", safe="")
        path = path.replace("{id}", pid)
        check(http.request(method, path, content=json.dumps(body), headers={"content-type": "application/json"}))
        check(http.get(f"/products/{pid}"))
        check(http.get(f"/exhibitions/{pid}/representative"))
        check(
            http.post(
                "/rank/upload",
                data={"topic": json.dumps(body.get("topic", body))},
                files=[("images", ("a.jpg", b"\xff\xd8", "image/jpeg"))],
            )
        )

    run()


def test_batch_and_path_ids_keep_to_the_safe_alphabet(env, uid):
    for bad in (f"{uid}/a", "   ", "a b", "\t"):
        r = env.http.put("/products", json={"products": [{"product_id": bad, "image_url": "a.jpg"}]})
        assert r.status_code == 422, (bad, r.status_code, r.text[:200])
        r = env.http.put(f"/exhibitions/{uid}", json={"topic": {}, "product_ids": [bad]})
        assert r.status_code == 422, (bad, r.text[:200])
    assert env.http.put("/products/%20%20", json={"image_url": "a.jpg"}).status_code == 422
    assert env.http.put("/exhibitions/a%20b", json={"topic": {}}).status_code == 422
    ok = f"{uid}.sku-1_A:b@c+d=e~f"
    assert env.http.put("/products", json={"products": [{"product_id": ok, "image_url": "a.jpg"}]}).status_code == 202
    assert env.http.get(f"/products/{ok}").status_code == 200
    assert env.http.delete(f"/products/{ok}").status_code == 204


@pytest.fixture(scope="module")
def slow_host():
    server = HostileServer()
    server.files["slow.jpg"] = jpeg_bytes(5)
    server.slow_s = 4.0
    yield server
    server.close()


def test_slow_image_origins_do_not_starve_other_routes(env, uid, slow_host):
    ids = [f"{uid}-s{i}" for i in range(45)]
    for pid in ids:
        env.store.put_product(pid, slow_host.url("/slow/slow.jpg"))
    env.store.put_product(f"{uid}-plain", "a.jpg")
    url = env.server.url

    def image(pid):
        return httpx.get(f"{url}/products/{pid}/image", timeout=30)

    with ThreadPoolExecutor(45) as pool:
        futures = [pool.submit(image, pid) for pid in ids]
        time.sleep(1.0)  # every request is in, the origin drips
        health = [_healthz_ms(url) for _ in range(3)]
        start = time.monotonic()
        assert httpx.get(f"{url}/products/{uid}-plain", timeout=30).status_code == 200
        other = (time.monotonic() - start) * 1000
        answers = [f.result() for f in futures]
    assert max(health) < 1000 and other < 1000, (health, other)
    codes = sorted({r.status_code for r in answers})
    assert set(codes) <= {200, 503}, codes
    served = [r for r in answers if r.status_code == 200]
    assert served and all(r.content == slow_host.files["slow.jpg"] for r in served)
    for r in answers:
        if r.status_code == 503:
            assert r.headers["Retry-After"] and "busy" in r.json()["detail"]


def test_readyz_checks_the_broker_and_errors_hide_internal_addresses(api_bundle):
    redis_or_skip()
    from api.app import create_app
    from api.settings import ApiSettings

    prefix = f"clik-apitest-{uuid.uuid4().hex[:10]}:"
    dead_port = free_port()
    dead = f"redis://127.0.0.1:{dead_port}/0"
    from indexer.config import open_store

    store = open_store(STORE_URL, prefix=prefix)
    store.register_version(api_bundle.version, api_bundle.embed_dim, bundle_uri=str(api_bundle.path))
    store.activate(api_bundle.version)
    try:
        with ApiServer(create_app(api_settings(prefix, broker_url=dead))) as server:
            http = server.client()
            deadline = time.monotonic() + 30
            while "not loaded yet" in " ".join(r := http.get("/readyz").json()["problems"]):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            start = time.monotonic()
            r = http.get("/readyz")
            assert time.monotonic() - start < 1.5
            assert r.status_code == 503 and any("broker" in p for p in r.json()["problems"]), r.text
            assert str(dead_port) not in r.text
            r = http.put("/products/p", json={"image_url": "http://x.example/a.jpg"})
            assert r.status_code == 503 and str(dead_port) not in r.text, r.text
        settings = ApiSettings(_env_file=None, store_url=dead, broker_url=dead, api_keys=[API_KEY])
        with ApiServer(create_app(settings)) as server:
            http = server.client(key=None)
            for path in ("/products/p", "/exhibitions", "/readyz"):
                r = http.get(path)
                assert r.status_code == 503 and str(dead_port) not in r.text, (path, r.text)
    finally:
        store.close()
        delete_keys(STORE_URL, prefix + "*")
