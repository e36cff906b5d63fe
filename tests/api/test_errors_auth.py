"""Auth and every error status, over HTTP: 401/403, 404, 422 naming the field, 409, 503."""

from __future__ import annotations

import uuid

import pytest

from tests.support.api_server import API_KEY, ApiServer, api_settings, free_port
from tests.support.services import STORE_URL, delete_keys, redis_or_skip

pytestmark = pytest.mark.redis


def test_writes_need_a_key_reads_are_open(env, uid):
    anon = env.server.client(key=None)
    wrong = env.server.client(key="not-" + API_KEY)
    body = {"image_url": f"{env.images}/img0.jpg"}
    r = anon.put(f"/products/{uid}", json=body)
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
    assert wrong.put(f"/products/{uid}", json=body).status_code == 403
    assert anon.put(f"/exhibitions/{uid}", json={"topic": {}}).status_code == 401
    assert wrong.delete(f"/exhibitions/{uid}").status_code == 403
    assert anon.post("/rank", json={"topic": {}, "image_urls": ["http://x.example/a.jpg"]}).status_code == 401
    # nothing was written by the refused calls
    assert anon.get(f"/products/{uid}").status_code == 404
    assert anon.get(f"/exhibitions/{uid}").status_code == 404
    assert anon.get("/exhibitions").status_code == 200
    assert anon.get("/healthz").status_code == 200


def test_closed_reads_need_a_key(api_bundle):
    redis_or_skip()
    from api.app import create_app

    prefix = f"clik-apitest-{uuid.uuid4().hex[:10]}:"
    try:
        with ApiServer(create_app(api_settings(prefix, open_reads=False, preload_model=False))) as server:
            assert server.client(key=None).get("/exhibitions").status_code == 401
            assert server.client(key="nope").get("/exhibitions/x").status_code == 403
            assert server.client().get("/exhibitions").status_code == 200
            assert server.client(key=None).get("/healthz").status_code == 200
            assert server.client(key=None).get("/metrics").status_code == 200
    finally:
        delete_keys(STORE_URL, prefix + "*")


def test_unknown_ids_are_404(env, uid):
    for path in (
        f"/products/{uid}",
        f"/exhibitions/{uid}",
        f"/exhibitions/{uid}/representative",
        f"/exhibitions/{uid}/ranking",
        f"/products/{uid}/image",
    ):
        r = env.http.get(path)
        assert r.status_code == 404 and uid in r.json()["detail"], path
    assert env.http.delete(f"/exhibitions/{uid}").status_code == 404


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/products/p", {}, "image_url"),
        ("/products/p", {"image_url": ""}, "image_url"),
        ("/products/p", {"image_url": "a.jpg", "attrs": "x"}, "attrs"),
        ("/products/p", {"image_url": "http://shop.example:99999/a.jpg"}, "image_url"),
        ("/products/p", {"image_url": "http://\U001047b6.example/a.jpg"}, "image_url"),
        ("/products/p", {"image_url": "ftp://shop.example/a.jpg"}, "image_url"),
        ("/products/p", {"image_url": "a.jpg", "colour": "red"}, "colour"),
        ("/exhibitions/e", {"topic": {"name": "x", "colour": "red"}}, "colour"),
        ("/exhibitions/e", {"topic": {"name": 5}}, "name"),
        ("/exhibitions/e", {"topic": {}, "product_ids": ["ok", ""]}, "product_ids"),
        ("/exhibitions/e", {"product_ids": []}, "topic"),
        ("/products", {"products": [{"product_id": "a"}]}, "image_url"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(env, path, body, field):
    r = env.http.put(path, json=body)
    assert r.status_code == 422, r.text
    assert any(field in [str(x) for x in e["loc"]] for e in r.json()["detail"]), r.json()


def test_invalid_queries_are_422(env, uid):
    env.http.put(f"/exhibitions/{uid}", json={"topic": {"name": "x"}})
    cases = [
        (f"/exhibitions/{uid}/representative", {"topk": 0}, "topk"),
        (f"/exhibitions/{uid}/representative", {"topk": 10_000}, "topk"),
        (f"/exhibitions/{uid}/ranking", {"offset": -1}, "offset"),
        (f"/exhibitions/{uid}/ranking", {"limit": "many"}, "limit"),
        ("/search", {}, "q"),
        ("/search", {"q": "x", "k": 0}, "k"),
        ("/search", {"q": "   "}, "q"),
    ]
    for path, params, field in cases:
        r = env.http.get(path, params=params)
        assert r.status_code == 422, (path, params, r.text)
        assert any(field in [str(x) for x in e["loc"]] for e in r.json()["detail"]), r.json()
    r = env.http.put("/products/p", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = env.http.put(
        f"/products/{uid}",
        content=b'{"image_url": "a.jpg", "attrs": {"x": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and "attrs" in r.text
    assert env.http.get(f"/products/{uid}").status_code == 404  # nothing written


def test_other_model_version_is_409(env, uid):
    env.http.put(f"/exhibitions/{uid}", json={"topic": {"name": "x"}})
    r = env.http.get(f"/exhibitions/{uid}/representative", params={"model_version": "v-old"})
    assert r.status_code == 409 and env.bundle.version in r.json()["detail"]
    r = env.http.get(f"/exhibitions/{uid}/representative", params={"model_version": env.bundle.version})
    assert r.status_code == 200
    assert env.http.get("/search", params={"q": "x", "model_version": "nope"}).status_code == 409


def test_store_down_is_503():
    from api.app import create_app
    from api.settings import ApiSettings

    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings = ApiSettings(_env_file=None, store_url=dead, broker_url=dead, api_keys=[API_KEY])
    with ApiServer(create_app(settings)) as server:
        http = server.client()
        for method, path, body in [
            ("GET", "/exhibitions/e/representative", None),
            ("GET", "/exhibitions/e/ranking", None),
            ("GET", "/exhibitions", None),
            ("GET", "/products/p", None),
            ("GET", "/search?q=x", None),
            ("PUT", "/products/p", {"image_url": "http://x.example/a.jpg"}),
            ("PUT", "/exhibitions/e", {"topic": {"name": "x"}}),
            ("DELETE", "/products/p", None),
        ]:
            r = http.request(method, path, json=body)
            assert r.status_code == 503, (method, path, r.text)
            assert "unreachable" in r.json()["detail"] or "unavailable" in r.json()["detail"]
        r = http.get("/readyz")
        assert r.status_code == 503 and "store unavailable" in r.json()["problems"][0]
        assert http.get("/healthz").status_code == 200


def test_no_active_version_and_broker_down_are_503(api_bundle):
    redis_or_skip()
    from api.app import create_app

    prefix = f"clik-apitest-{uuid.uuid4().hex[:10]}:"
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    try:
        with ApiServer(create_app(api_settings(prefix, broker_url=dead_broker))) as server:
            http = server.client()
            http.put("/exhibitions/e", json={"topic": {"name": "x"}})
            r = http.get("/exhibitions/e/representative")
            assert r.status_code == 503 and "no active model version" in r.json()["detail"]
            assert http.get("/readyz").json()["problems"] == [
                "no active model version",
                "broker unavailable: encode tasks cannot be queued",
            ]
            r = http.put("/products/p", json={"image_url": "http://x.example/a.jpg"})
            assert r.status_code == 503 and "queue" in r.json()["detail"]
            # the product is kept (pending): PUT again once the broker is back queues it again
            assert http.get("/products/p").json()["status"] == "pending"
    finally:
        delete_keys(STORE_URL, prefix + "*")


def test_missing_bundle_is_503(tmp_path):
    redis_or_skip()
    from api.app import create_app
    from indexer.config import open_store

    prefix = f"clik-apitest-{uuid.uuid4().hex[:10]}:"
    store = open_store(STORE_URL, prefix=prefix)
    store.register_version("ghost", 32, bundle_uri=str(tmp_path / "no-such-bundle"))
    store.activate("ghost")
    store.put_exhibition("e", {"name": "x"}, [])
    try:
        with ApiServer(create_app(api_settings(prefix), store=store)) as server:
            r = server.client().get("/exhibitions/e/representative")
            assert r.status_code == 503 and "cannot load the text side of ghost" in r.json()["detail"]
    finally:
        store.close()
        delete_keys(STORE_URL, prefix + "*")
