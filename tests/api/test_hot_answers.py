"""The hot path (api/hot_answers.py): warm ranking answers sent from the event loop, in front of
the FastAPI route, on the real Redis. It must answer exactly what the route would (same tag,
headers, body), only when the answer is known, and hand everything else to the route."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.support.api_server import API_KEY, ApiServer, api_settings
from tests.support.bundles import store_with_linen_shirts
from tests.support.services import STORE_URL, delete_keys, redis_or_skip

pytestmark = pytest.mark.redis


class CountingRoute:
    """The app behind the hot path, counting the requests the hot path handed on to it."""

    def __init__(self, app) -> None:
        self.app, self.calls = app, 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        await self.app(scope, receive, send)


async def _get(asgi, path: str, query: str = "", headers: dict | None = None) -> tuple[int, dict, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "server": ("test", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await asgi(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture()
def hot(api_bundle):
    """(hot path over the real app, its route counter, the store, the bundle, the hot path's
    reads: closed by each test on its loop) on the test Redis."""
    redis_or_skip()
    from api.app import create_app
    from api.hot_answers import HotAnswers

    prefix = f"clik-hottest-{uuid.uuid4().hex[:10]}:"
    store = store_with_linen_shirts(api_bundle, STORE_URL, prefix)
    settings = api_settings(prefix, merch_cache_s=0)
    app = create_app(settings, store=store)  # its own hot path has no reads (no lifespan): it hands on
    route = CountingRoute(app)
    reads = store.async_reads()
    yield (
        HotAnswers(
            route,
            answers=app.state.answers,
            settings=settings,
            reads=lambda: reads,
            routes={},
            units=lambda: app.state.experiments,
        ),
        route,
        store,
        api_bundle,
        reads,
    )
    store.close()
    delete_keys(STORE_URL, prefix + "*")


def test_a_warm_answer_leaves_from_the_hot_path_with_the_routes_tag_headers_and_body(hot):
    path, route, store, _, reads = hot

    async def run():
        first = await _get(path, "/exhibitions/e/representative", "topk=2")
        assert first[0] == 200 and route.calls == 1  # nothing known yet: the route computed it
        again = await _get(path, "/exhibitions/e/representative", "topk=2")
        assert route.calls == 1 and again == first  # status, every header, body
        assert first[1][b"etag"].startswith(b'"') and first[1][b"cache-control"] == b"public, max-age=5"
        held = await _get(
            path, "/exhibitions/e/representative", "topk=2", {"If-None-Match": first[1][b"etag"].decode()}
        )
        assert held[0] == 304 and held[2] == b"" and held[1][b"etag"] == first[1][b"etag"] and route.calls == 1
        page = await _get(path, "/exhibitions/e/ranking", "offset=1&limit=3")
        assert route.calls == 2 and await _get(path, "/exhibitions/e/ranking", "offset=1&limit=3") == page
        assert route.calls == 2
        await reads.aclose()

    asyncio.run(run())


def test_any_change_makes_the_hot_path_hand_on_to_the_route_until_the_new_answer_is_rendered(hot):
    path, route, store, bundle, reads = hot

    async def run():
        old = await _get(path, "/exhibitions/e/representative")
        await _get(path, "/exhibitions/e/representative")
        assert route.calls == 1
        store.put_product("p1", "https://img.example/1.jpg", {"sold_out": True})
        new = await _get(path, "/exhibitions/e/representative")
        assert route.calls == 2 and new[1][b"etag"] != old[1][b"etag"]  # never the old bytes
        assert await _get(path, "/exhibitions/e/representative") == new and route.calls == 2
        # the old tag is no longer current: a client holding it gets the new answer, not a 304
        stale = await _get(path, "/exhibitions/e/representative", "", {"If-None-Match": old[1][b"etag"].decode()})
        assert stale == new and route.calls == 2
        await reads.aclose()

    asyncio.run(run())


def test_the_route_answers_what_the_hot_path_does_not_read(hot):
    path, route, store, bundle, reads = hot

    async def run():
        await _get(path, "/exhibitions/e/representative")  # the answer and the threshold are known now
        cases = {
            "topk=0": 422,
            "topk=abc": 422,
            "topk=100000": 422,
            "topk=1&topk=2": 200,
            "diverse=maybe": 422,
            "unit=visitor-1": 200,
            "colour=red": 200,
            f"model_version={bundle.version}x": 409,
        }
        for query, status in cases.items():
            calls = route.calls
            got = await _get(path, "/exhibitions/e/representative", query)
            assert got[0] == status and route.calls == calls + 1, query
        for exhibition, status in (("nope", 404), ("e%x", 422), ("e\nx", 422)):
            calls = route.calls
            assert (await _get(path, f"/exhibitions/{exhibition}/representative"))[0] == status
            assert route.calls == calls + 1
        calls = route.calls
        same = await _get(path, "/exhibitions/e/representative", f"model_version={bundle.version}&topk=1")
        assert same[0] == 200 and route.calls == calls  # the active version named: still a warm answer
        await reads.aclose()

    asyncio.run(run())


def test_with_closed_reads_only_a_valid_key_gets_a_warm_answer(api_bundle):
    redis_or_skip()
    from api.app import create_app
    from api.hot_answers import HotAnswers

    prefix = f"clik-hottest-{uuid.uuid4().hex[:10]}:"
    store = store_with_linen_shirts(api_bundle, STORE_URL, prefix)
    settings = api_settings(prefix, open_reads=False)
    route = CountingRoute(create_app(settings, store=store))
    reads = store.async_reads()
    path = HotAnswers(route, answers=route.app.state.answers, settings=settings, reads=lambda: reads, routes={})
    try:

        async def run():
            assert (await _get(path, "/exhibitions/e/representative", "", {"X-API-Key": API_KEY}))[0] == 200
            assert (await _get(path, "/exhibitions/e/representative", "", {"X-API-Key": API_KEY}))[0] == 200
            assert route.calls == 1
            assert (await _get(path, "/exhibitions/e/representative"))[0] == 401 and route.calls == 2
            assert (await _get(path, "/exhibitions/e/representative", "", {"X-API-Key": "wrong"}))[0] == 403
            assert route.calls == 3
            await reads.aclose()

        asyncio.run(run())
    finally:
        store.close()
        delete_keys(STORE_URL, prefix + "*")


def test_over_http_the_hot_answer_equals_the_routes_and_is_timed_under_the_routes_name(api_bundle):
    redis_or_skip()
    from api.app import create_app

    prefix = f"clik-hottest-{uuid.uuid4().hex[:10]}:"
    store = store_with_linen_shirts(api_bundle, STORE_URL, prefix)
    try:
        with ApiServer(create_app(api_settings(prefix))) as server:
            http = server.client()
            first = http.get("/exhibitions/e/representative", params={"topk": 2})
            hot = http.get("/exhibitions/e/representative", params={"topk": 2})
            routed = http.get("/exhibitions/e/representative", params={"topk": 2, "colour": "red"})  # not read here
            for r in (hot, routed):
                assert r.status_code == 200 and r.content == first.content
                for name in ("etag", "cache-control", "content-type", "content-length"):
                    assert r.headers[name] == first.headers[name], name
            metrics = http.get("/metrics").text
            assert (
                'clik_api_request_seconds_count{method="GET",route="/exhibitions/{exhibition_id}/representative",'
                'status="200"} 3.0'
            ) in metrics
            assert 'clik_api_answers_total{source="memory"} 2.0' in metrics
    finally:
        store.close()
        delete_keys(STORE_URL, prefix + "*")


def test_a_visitor_whose_answer_is_the_plain_one_is_served_by_the_hot_path_with_its_experiment_fields(hot):
    import json

    from indexer.experiments import Arm, Experiment, ExperimentRecords

    path, route, store, _, reads = hot

    def fields(body: bytes) -> dict:
        doc = json.loads(body)
        assert len(doc.pop("request_id")) == 32
        return doc

    async def run():
        plain = await _get(path, "/exhibitions/e/representative", "topk=2")
        first = await _get(path, "/exhibitions/e/representative", "topk=2&unit=visitor-1")
        assert route.calls == 2  # the exhibition's experiment not known yet: the route said
        again = await _get(path, "/exhibitions/e/representative", "topk=2&unit=visitor-2")
        assert route.calls == 2 and again[0] == 200
        assert again[1][b"cache-control"] == b"private, no-store" and b"etag" not in again[1]
        assert (
            fields(again[2])
            == fields(first[2])
            == {
                **json.loads(plain[2]),
                "experiment": None,
                "arm": None,
                "policy": None,
                "propensity": 1.0,
                "share": None,
            }
        )
        # an experiment whose one arm is the active model: its fields in front of the same bytes
        ExperimentRecords(store).put(Experiment("exp", (Arm("model", 1.0, "model"),), ("e",), "model"))
        app = route.app
        app.state.experiments.forget()
        routed = await _get(path, "/exhibitions/e/representative", "topk=2&unit=visitor-3")
        assert route.calls == 3  # read the experiment
        hot_one = await _get(path, "/exhibitions/e/representative", "topk=2&unit=visitor-4")
        assert route.calls == 3 and fields(hot_one[2]) == fields(routed[2])
        assert fields(hot_one[2])["arm"] == "exp:model" and fields(hot_one[2])["propensity"] == 1.0
        # a control arm computes its own answer: always the route's
        ExperimentRecords(store).put(Experiment("exp", (Arm("control", 1.0, "control"),), ("e",), "control"))
        app.state.experiments.forget()
        for visitor in ("a", "b"):
            await _get(path, "/exhibitions/e/representative", f"topk=2&unit={visitor}")
        assert route.calls == 5
        # what the route refuses stays the route's (422)
        bad = await _get(path, "/exhibitions/e/representative", "unit=v&model_version=x")
        assert bad[0] == 422 and route.calls == 6
        await reads.aclose()

    asyncio.run(run())
