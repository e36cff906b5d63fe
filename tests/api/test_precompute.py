"""Precompute on write and the shared result cache, over real HTTP (uvicorn) on the real Redis
with a real Celery worker: after an exhibition PUT the worker makes its topic query and packed
block, so the first read encodes nothing (seen in /metrics, not timed); an answer rendered by one
API process is served by another from the store, and a change of products, vectors, the
exhibition or the active version gives a new answer, never the cached one."""

from __future__ import annotations

import re
import time
import uuid

import numpy as np
import pytest

from clik import topic_cache
from tests.support.api_server import ApiServer, api_settings
from tests.support.bundles import store_with_linen_shirts
from tests.support.services import STORE_URL, delete_keys, redis_or_skip

pytestmark = pytest.mark.redis


def counter(http, name: str, label: str) -> float:
    """A counter's value in /metrics (0 when that label was never counted)."""
    text = http.get("/metrics").text
    found = re.search(rf"^{name}{{{label}}} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_for(check, timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not done within {timeout_s}s: {what}")
        time.sleep(0.1)


def test_first_read_after_put_is_a_warm_read_once_the_worker_precomputed(env, uid):
    ids = []
    for i in range(3):
        pid = f"{uid}-p{i}"
        assert env.http.put(f"/products/{pid}", json={"image_url": f"{env.images}/img{i}.jpg"}).status_code == 202
        ids.append(pid)
    env.wait_encoded(ids)
    topic = {"name": f"precomputed linen {uid}", "cat1": "Fashion"}
    sent = counter(env.http, "clik_api_precompute_total", 'result="sent"')
    eid = f"{uid}-ex"
    assert env.http.put(f"/exhibitions/{eid}", json={"topic": topic, "product_ids": ids}).status_code == 200
    assert counter(env.http, "clik_api_precompute_total", 'result="sent"') == sent + 1
    version = env.bundle.version
    key = topic_cache.entry_key(topic)
    wait_for(lambda: env.store.get_topic_embedding(version, key) is not None, what="topic entry by the worker")
    # the block is stored at its current stamp too (the worker's task ends with it)
    vid = env.store.get_version(version).id
    _, stamp, _ = env.store.block_stamp(eid)
    wait_for(lambda: env.store.r.hget(f"{env.prefix}b:{vid}:{eid}", "s") == stamp.encode(), what="packed block")

    # the worker announces it; this process renders the default answer (api/announced.py) with
    # the topic entry read from the store, not encoded
    wait_for(
        lambda: counter(env.http, "clik_api_precompute_total", 'result="rendered"') == 1,
        what="default answer rendered after the notice",
    )
    assert counter(env.http, "clik_api_topic_cache_total", 'result="miss"') == 0
    assert counter(env.http, "clik_api_topic_cache_total", 'result="store"') == 1
    computed = counter(env.http, "clik_api_answers_total", 'source="computed"')
    first = env.http.get(f"/exhibitions/{eid}/representative")
    assert first.status_code == 200 and len(first.json()["items"]) == 1
    assert counter(env.http, "clik_api_answers_total", 'source="computed"') == computed  # a warm read
    r = env.http.get(f"/exhibitions/{eid}/representative", params={"topk": 3})  # not rendered ahead
    assert r.status_code == 200 and len(r.json()["items"]) == 3
    assert counter(env.http, "clik_api_topic_cache_total", 'result="miss"') == 0  # nothing encoded


@pytest.fixture()
def two_apis(api_bundle, api_bundle2):
    """Two API apps (two processes' worth of state) on one Redis prefix, no worker needed."""
    redis_or_skip()
    from api.app import create_app

    prefix = f"clik-answertest-{uuid.uuid4().hex[:10]}:"
    store = store_with_linen_shirts(api_bundle, STORE_URL, prefix)
    settings = api_settings(prefix, merch_cache_s=0)
    with ApiServer(create_app(settings)) as a, ApiServer(create_app(settings)) as b:
        yield a.client(), b.client(), store, api_bundle, api_bundle2
    store.close()
    delete_keys(STORE_URL, prefix + "*")


def test_an_answer_rendered_by_one_process_is_served_by_another_until_anything_changes(two_apis):
    a, b, store, bundle, bundle2 = two_apis

    def sources(http) -> dict[str, float]:
        return {s: counter(http, "clik_api_answers_total", f'source="{s}"') for s in ("memory", "store", "computed")}

    first = a.get("/exhibitions/e/representative", params={"topk": 3})
    assert first.status_code == 200 and sources(a)["computed"] == 1
    before = sources(b)
    second = b.get("/exhibitions/e/representative", params={"topk": 3})
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
    assert sources(b) == {**before, "store": before["store"] + 1}  # rendered by a, read from the store
    b.get("/exhibitions/e/representative", params={"topk": 3})
    assert sources(b)["memory"] == before["memory"] + 1  # then kept by b

    changes = {
        "product attrs": lambda: store.put_product("p1", "https://img.example/1.jpg", {"sold_out": True}),
        "a vector": lambda: store.put_vectors(bundle.version, [("h2", np.ones(bundle.embed_dim))]),
        "the members": lambda: store.put_exhibition("e", {"name": "linen shirts"}, [f"p{i}" for i in range(7)]),
        "the topic": lambda: store.put_exhibition("e", {"name": "wool coats"}, [f"p{i}" for i in range(7)]),
    }
    last = first
    for what, change in changes.items():
        change()
        computed = sources(b)["computed"]
        now = b.get("/exhibitions/e/representative", params={"topk": 3})
        assert now.status_code == 200 and now.headers["etag"] != last.headers["etag"], what
        assert sources(b)["computed"] == computed + 1, what  # never the cached answer of the old state
        assert a.get("/exhibitions/e/representative", params={"topk": 3}).content == now.content, what
        last = now
    body = last.json()
    assert "p1" in body["unavailable"] and body["total_scored"] == 7  # the changes are in the answer

    # another active version: a new answer, ranked by that version
    store.register_version(bundle2.version, bundle2.embed_dim, bundle_uri=str(bundle2.path))
    rng = np.random.default_rng(1)
    store.put_vectors(bundle2.version, [(f"h{i}", rng.standard_normal(bundle2.embed_dim)) for i in range(8)])
    store.activate(bundle2.version)
    now = b.get("/exhibitions/e/representative", params={"topk": 3})
    assert now.headers["etag"] != last.headers["etag"] and now.json()["model_version"] == bundle2.version


def test_a_representative_and_a_ranking_page_of_the_same_tag_keep_their_own_bodies(two_apis):
    a, _, _, _, _ = two_apis
    page = a.get("/exhibitions/e/ranking", params={"offset": 0, "limit": 5})
    representative = a.get("/exhibitions/e/representative", params={"topk": 5})
    assert page.json()["limit"] == 5 and page.json()["offset"] == 0
    assert "limit" not in representative.json() and "offset" not in representative.json()
    assert [i["product_id"] for i in page.json()["items"]] == [i["product_id"] for i in representative.json()["items"]]


def test_the_embedded_stack_warms_its_own_process_after_a_put(api_bundle, tmp_path):
    from api.app import create_app
    from indexer.config import EmbeddedStoreConfig
    from indexer.embedded_store import EmbeddedStore

    store = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path / "store"))
    store.register_version(api_bundle.version, api_bundle.embed_dim, bundle_uri=str(api_bundle.path))
    store.activate(api_bundle.version)
    rng = np.random.default_rng(0)
    for i in range(4):
        store.put_product(f"p{i}", f"https://img.example/{i}.jpg")
        store.mark_encoded(f"p{i}", f"h{i}")
    store.put_vectors(api_bundle.version, [(f"h{i}", rng.standard_normal(api_bundle.embed_dim)) for i in range(4)])

    class Queue:  # encodes nothing here: every product already has its vector
        def submit(self, product_ids: list[str]) -> None:
            pass

    app = create_app(api_settings("unused:", store_url=str(tmp_path / "store")), store=store, encode_queue=Queue())
    with ApiServer(app) as server:
        http = server.client()
        assert (
            http.put(
                "/exhibitions/e", json={"topic": {"name": "warm"}, "product_ids": ["p0", "p1", "p2", "p3"]}
            ).status_code
            == 200
        )
        assert app.state.precompute.join(30)
        assert counter(http, "clik_api_precompute_total", 'result="warmed"') == 1
        misses = counter(http, "clik_api_topic_cache_total", 'result="miss"')
        r = http.get("/exhibitions/e/representative")
        assert r.status_code == 200 and r.json()["items"]
        assert counter(http, "clik_api_answers_total", 'source="memory"') == 1  # the warmed answer itself
        assert counter(http, "clik_api_topic_cache_total", 'result="miss"') == misses
    store.close()


def test_an_announced_exhibition_is_rendered_by_one_process_and_served_warm_by_both(two_apis):
    a, b, store, bundle, _ = two_apis
    rendered = [counter(http, "clik_api_precompute_total", 'result="rendered"') for http in (a, b)]
    store.announce_precomputed(bundle.version, ["e"])
    wait_for(
        lambda: (
            sum(
                counter(http, "clik_api_precompute_total", f'result="{result}"')
                for http in (a, b)
                for result in ("rendered", "claimed_elsewhere")
            )
            == 2
        ),
        what="both processes heard the notice",
    )
    assert [counter(http, "clik_api_precompute_total", 'result="rendered"') for http in (a, b)] != rendered
    assert sum(counter(http, "clik_api_precompute_total", 'result="rendered"') for http in (a, b)) == 1
    # the process that lost the claim copies the winner's bytes into its memory
    wait_for(
        lambda: sum(counter(http, "clik_api_precompute_total", 'result="copied"') for http in (a, b)) == 1,
        what="the rendered answer copied by the other process",
    )
    first_a, first_b = a.get("/exhibitions/e/representative"), b.get("/exhibitions/e/representative")
    assert first_a.status_code == first_b.status_code == 200 and first_a.content == first_b.content
    assert first_a.headers["etag"] == first_b.headers["etag"]
    for source, count in (("computed", 0), ("store", 0), ("memory", 1)):  # both first reads: warm reads
        assert [counter(http, "clik_api_answers_total", f'source="{source}"') for http in (a, b)] == [count, count]
    # a notice about a version that is not the active one renders nothing
    store.announce_precomputed(bundle.version + "-other", ["e"])
    wait_for(
        lambda: sum(counter(http, "clik_api_precompute_total", 'result="not_active"') for http in (a, b)) == 2,
        what="the other version's notice heard",
    )
    # exact after a change: the rendered answer is never served for the new state
    store.put_product("p1", "https://img.example/1.jpg", {"sold_out": True})
    after = a.get("/exhibitions/e/representative")
    assert after.headers["etag"] != first_a.headers["etag"]
    assert counter(a, "clik_api_answers_total", 'source="computed"') == 1
