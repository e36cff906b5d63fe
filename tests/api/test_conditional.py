"""Ranking answers are conditional over real HTTP on the real Redis: an ETag that two API
processes agree on, 304 for a client holding it, a new tag on any change of what the answer
depends on (products, their attrs, vectors, the exhibition, the overrides), Cache-Control."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from tests.support.api_server import ApiServer, api_settings
from tests.support.bundles import store_with_linen_shirts
from tests.support.services import STORE_URL, delete_keys, redis_or_skip

pytestmark = pytest.mark.redis


@pytest.fixture()
def two_apis(api_bundle):
    redis_or_skip()
    from api.app import create_app

    prefix = f"clik-condtest-{uuid.uuid4().hex[:10]}:"
    store = store_with_linen_shirts(api_bundle, STORE_URL, prefix)
    settings = api_settings(prefix, result_max_age_s=7, merch_cache_s=0)
    with ApiServer(create_app(settings)) as a, ApiServer(create_app(settings)) as b:
        yield a.client(), b.client(), store, api_bundle
    store.close()
    delete_keys(STORE_URL, prefix + "*")


def test_etags_are_shared_exact_and_answered_with_304(two_apis):
    a, b, store, bundle = two_apis
    first = a.get("/exhibitions/e/representative", params={"topk": 3})
    assert first.status_code == 200 and first.headers["cache-control"] == "public, max-age=7"
    tag = first.headers["etag"]
    assert tag.startswith('"') and b.get("/exhibitions/e/representative", params={"topk": 3}).headers["etag"] == tag
    again = a.get("/exhibitions/e/representative", params={"topk": 3}, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    assert (
        b.get(
            "/exhibitions/e/representative", params={"topk": 3}, headers={"If-None-Match": f'"other", {tag}'}
        ).status_code
        == 304
    )
    assert a.get("/exhibitions/e/representative", params={"topk": 4}).headers["etag"] != tag  # other page
    assert a.get("/exhibitions/e/ranking").headers["etag"] != tag

    def tag_now() -> str:
        r = b.get("/exhibitions/e/representative", params={"topk": 3}, headers={"If-None-Match": tag})
        assert r.status_code in (200, 304)
        return r.headers["etag"]

    seen = {tag}
    changes = [
        lambda: store.put_product("p1", "https://img.example/1.jpg", {"sold_out": True}),  # attrs
        lambda: store.put_vectors(bundle.version, [("h2", np.ones(bundle.embed_dim))]),  # a vector
        lambda: store.put_exhibition("e", {"name": "linen shirts"}, [f"p{i}" for i in range(7)]),  # members
        lambda: store.put_exhibition("e", {"name": "wool coats"}, [f"p{i}" for i in range(7)]),  # topic
        lambda: a.put("/exhibitions/e/overrides", json={"pinned": {"p5": 1}}),  # overrides
    ]
    for change in changes:
        change()
        now = tag_now()
        assert now not in seen, change
        seen.add(now)
        r = b.get("/exhibitions/e/representative", params={"topk": 3}, headers={"If-None-Match": now})
        assert r.status_code == 304  # and the new state is stable


def test_two_exhibitions_in_the_same_state_never_share_a_tag(two_apis):
    a, _, store, _ = two_apis
    store.put_exhibition("f", {"name": "linen shirts"}, ["p6", "p7"])  # generations like e's
    e = a.get("/exhibitions/e/representative")
    f = a.get("/exhibitions/f/representative")
    assert e.headers["etag"] != f.headers["etag"]
    assert f.json()["exhibition_id"] == "f" and f.json()["items"][0]["product_id"] in ("p6", "p7")
