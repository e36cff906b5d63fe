"""Experiments over real HTTP (uvicorn) on the real Redis, and on the embedded store: definitions
refused when bad, units assigned deterministically, propensities that match what is served,
the plain path untouched, the report's intervals on a known case, Thompson sampling finding a
clearly best product of a new exhibition from clicks counted by the real consumer."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from indexer.events import RedisEventLog, consume
from indexer.experiments import ExperimentRecords
from tests.support.api_server import ApiServer, api_settings
from tests.support.services import STORE_URL, delete_keys, redis_or_skip

N_PRODUCTS = 8


def _catalogue(store, bundle) -> None:
    rng = np.random.default_rng(0)
    store.register_version(bundle.version, bundle.embed_dim, bundle_uri=str(bundle.path))
    store.activate(bundle.version)
    store.import_products([(f"p{i}", f"https://img.example/{i}.jpg", f"h{i}") for i in range(N_PRODUCTS)])
    store.put_vectors(bundle.version, [(f"h{i}", rng.standard_normal(bundle.embed_dim)) for i in range(N_PRODUCTS)])
    store.put_exhibition("e", {"name": "linen shirts"}, [f"p{i}" for i in range(N_PRODUCTS)])
    store.put_exhibition("new", {"name": "wool coats"}, [f"p{i}" for i in range(N_PRODUCTS)])
    store.put_exhibition("other", {"name": "bags"}, [f"p{i}" for i in range(N_PRODUCTS)])


@pytest.fixture()
def redis_api(api_bundle):
    redis_or_skip()
    from api.app import create_app
    from indexer.config import open_store

    prefix = f"clik-exptest-{uuid.uuid4().hex[:10]}:"
    store = open_store(STORE_URL, prefix=prefix)
    _catalogue(store, api_bundle)
    with ApiServer(create_app(api_settings(prefix, experiments_cache_s=0, merch_cache_s=0))) as server:
        yield server, prefix, store
    store.close()
    delete_keys(STORE_URL, prefix + "*")


@pytest.fixture()
def embedded_api(api_bundle, tmp_path):
    from api.app import create_app
    from indexer.config import open_store

    store = open_store(str(tmp_path / "store"))
    _catalogue(store, api_bundle)
    with ApiServer(
        create_app(api_settings("clik:", store_url=str(tmp_path / "store"), experiments_cache_s=0), store=store)
    ) as server:
        yield server, store
    store.close()


THREE_ARMS = {
    "exhibitions": ["e"],
    "arms": [
        {"name": "clik", "share": 0.5, "policy": "model"},
        {"name": "control", "share": 0.3, "policy": "control"},
        {"name": "explore", "share": 0.2, "policy": "explore", "candidates": 4},
    ],
}


def _check_experiment_serving(server) -> None:
    http = server.client()
    assert http.put("/experiments/x1", json=THREE_ARMS).status_code == 200
    plain = http.get("/exhibitions/e/representative")
    assert plain.status_code == 200 and "request_id" not in plain.json() and plain.headers["etag"]
    best = plain.json()["items"][0]["product_id"]

    arms: dict[str, str] = {}
    propensities: dict[str, list[float]] = {"x1:clik": [], "x1:control": [], "x1:explore": []}
    for i in range(300):
        r = http.get("/exhibitions/e/representative", params={"unit": f"visitor-{i}"})
        assert r.status_code == 200 and r.headers["cache-control"] == "private, no-store"
        body = r.json()
        assert body["experiment"] == "x1" and len(body["request_id"]) == 32 and len(body["items"]) == 1
        arms[f"visitor-{i}"] = body["arm"]
        propensities[body["arm"]].append(body["propensity"])
        if body["arm"] == "x1:clik":
            assert body["items"][0]["product_id"] == best and body["propensity"] == 1.0
            assert body["policy"] == "model" and body["model_version"] == plain.json()["model_version"]
    shares = Counter(arms.values())
    assert 120 <= shares["x1:clik"] <= 180 and 60 <= shares["x1:control"] <= 120 and 30 <= shares["x1:explore"] <= 90
    assert set(propensities["x1:control"]) == {1 / N_PRODUCTS}  # a random product of 8
    assert all(0 < p <= 1 for p in propensities["x1:explore"])
    for i in range(0, 300, 7):  # the same unit, the same arm, every time
        again = http.get("/exhibitions/e/representative", params={"unit": f"visitor-{i}"}).json()
        assert again["arm"] == arms[f"visitor-{i}"]
    # an explicit experiment, another exhibition not bound to it: plain answer with a request id
    unbound = http.get("/exhibitions/other/representative", params={"unit": "visitor-1"}).json()
    assert unbound["arm"] is None and unbound["experiment"] is None and unbound["items"][0]["product_id"]
    assert http.get("/exhibitions/e/representative", params={"unit": "v", "experiment": "nope"}).status_code == 404
    assert http.get("/exhibitions/e/representative", params={"experiment": "x1"}).status_code == 422


@pytest.mark.redis
def test_units_are_assigned_deterministically_with_valid_propensities(redis_api):
    server, _, _ = redis_api
    _check_experiment_serving(server)


def test_experiments_serve_on_the_embedded_store(embedded_api):
    server, _ = embedded_api
    _check_experiment_serving(server)


@pytest.mark.redis
def test_bad_definitions_are_refused_and_exhibitions_bound_once(redis_api):
    server, _, _ = redis_api
    http = server.client()
    bad = [
        ({"arms": []}, "arms"),
        ({"arms": [{"name": "a", "share": 0, "policy": "model"}]}, "share"),
        ({"arms": [{"name": "a", "share": 1, "policy": "bandit"}]}, "policy"),
        ({"arms": [{"name": "a", "share": 1, "policy": "model"}] * 2}, "used twice"),
        ({"arms": [{"name": "a", "share": 1, "policy": "model", "model_version": "nope"}]}, "nope"),
        ({"arms": [{"name": "a", "share": 1, "policy": "model"}], "control_arm": "b"}, "control_arm"),
    ]
    for body, where in bad:
        r = http.put("/experiments/bad", json=body)
        assert r.status_code == 422 and where in r.text, (body, r.text)
    assert server.client(key=None).put("/experiments/x", json=THREE_ARMS).status_code == 401
    assert http.put("/experiments/x1", json=THREE_ARMS).status_code == 200
    clash = http.put("/experiments/x2", json=THREE_ARMS)
    assert clash.status_code == 409 and "x1" in clash.text
    assert http.put("/experiments/x1", json={**THREE_ARMS, "status": "stopped"}).status_code == 200
    assert http.put("/experiments/x2", json=THREE_ARMS).status_code == 200  # released by stopping x1
    r = http.get("/exhibitions/e/representative", params={"unit": "u"}).json()
    assert r["experiment"] == "x2"
    everywhere = {"arms": [{"name": "clik", "share": 1, "policy": "model"}]}  # every exhibition
    assert http.put("/experiments/x3", json=everywhere).status_code == 200
    assert http.put("/experiments/x4", json=everywhere).status_code == 409
    assert http.get("/exhibitions/other/representative", params={"unit": "u"}).json()["experiment"] == "x3"
    assert http.get("/exhibitions/e/representative", params={"unit": "u"}).json()["experiment"] == "x2"  # its own
    assert {e["experiment_id"] for e in http.get("/experiments").json()["items"]} == {"x1", "x2", "x3"}


@pytest.mark.redis
def test_explore_propensities_match_what_is_served(redis_api):
    server, _, _ = redis_api
    http = server.client()
    body = {
        "exhibitions": ["e"],
        "arms": [
            {
                "name": "explore",
                "share": 1,
                "policy": "explore",
                "candidates": 4,
                "prior_strength": 4,
                "prior_scale": 1.0,
            }
        ],
    }
    assert http.put("/experiments/tp", json=body).status_code == 200
    served, logged = Counter(), {}
    n = 400
    for _ in range(n):  # no events: the posterior stays the prior, so each product's probability is fixed
        r = http.get("/exhibitions/e/representative", params={"unit": "one-visitor"}).json()
        product = r["items"][0]["product_id"]
        served[product] += 1
        logged.setdefault(product, []).append(r["propensity"])
    assert len(served) >= 2
    for product, count in served.items():
        p = float(np.mean(logged[product]))
        assert abs(count / n - p) < 4 * np.sqrt(p * (1 - p) / n) + 0.03, (product, count / n, p)
    # the probabilities of the candidates served sum to at most 1, and to about 1 over all of them
    assert sum(float(np.mean(v)) for v in logged.values()) <= 1.0 + 0.05


def _post(http, events: list[dict]) -> None:
    for i in range(0, len(events), 1000):
        assert http.post("/events", json={"events": events[i : i + 1000]}).status_code == 202


@pytest.mark.redis
def test_report_intervals_on_a_known_case(redis_api):
    server, prefix, _ = redis_api
    http = server.client()
    body = {
        "exhibitions": ["e", "new"],
        "arms": [
            {"name": "control", "share": 1, "policy": "control"},
            {"name": "clik", "share": 1, "policy": "model"},
            {"name": "idle", "share": 1, "policy": "model"},
        ],
    }
    assert http.put("/experiments/known", json=body).status_code == 200
    events = []
    for arm, n, clicks in (("control", 1000, 50), ("clik", 1000, 80)):
        for i in range(n):
            exhibition = "e" if i % 2 else "new"
            events.append(
                {
                    "event_id": f"{arm}-i{i}",
                    "type": "impression",
                    "exhibition_id": exhibition,
                    "product_id": f"p{i % 8}",
                    "arm": f"known:{arm}",
                    "request_id": f"{arm}-{i}",
                }
            )
            if i < clicks:
                events.append(
                    {
                        "event_id": f"{arm}-c{i}",
                        "type": "click",
                        "exhibition_id": exhibition,
                        "product_id": f"p{i % 8}",
                        "arm": f"known:{arm}",
                        "request_id": f"{arm}-{i}",
                    }
                )
    events.append({**events[0], "arm": "other:control"})  # another experiment's arm: not counted here
    _post(http, events)
    consume(RedisEventLog.from_url(STORE_URL, prefix), "t", stop_after_idle=0.3)
    doc = http.get("/experiments/known").json()
    arms = {a["arm"]: a for a in doc["arms"]}
    control, clik, idle = arms["control"], arms["clik"], arms["idle"]
    assert (control["impressions"], control["clicks"], clik["impressions"], clik["clicks"]) == (1000, 50, 1000, 80)
    # Wilson intervals (reference: scipy.stats.binomtest(...).proportion_ci(method="wilson"))
    assert control["ctr"] == 0.05 and control["ctr_ci95"] == pytest.approx([0.038130, 0.065314], abs=1e-6)
    assert clik["ctr_ci95"] == pytest.approx([0.064748, 0.098466], abs=1e-6)
    # lift 0.6; Katz interval exp(ln 1.6 ± 1.96 sqrt(1/80 - 1/1000 + 1/50 - 1/1000)) - 1
    assert clik["lift"] == pytest.approx(0.6)
    assert clik["lift_ci95"] == pytest.approx([0.13620, 1.25310], abs=2e-4)
    assert clik["p_beats_control"] == pytest.approx(0.9954, abs=0.004)  # P(Beta(81,921) > Beta(51,951))
    assert control["p_beats_control"] is None and control["lift"] is None and control["control"] is True
    assert idle["impressions"] == 0 and idle["ctr"] is None and idle["ctr_ci95"] is None
    assert http.get("/experiments/none").status_code == 404


@pytest.mark.redis
def test_thompson_converges_on_the_clearly_best_product_of_a_new_exhibition(redis_api):
    server, prefix, _ = redis_api
    http = server.client()
    body = {"exhibitions": ["new"], "arms": [{"name": "ts", "share": 1, "policy": "explore", "candidates": 6}]}
    assert http.put("/experiments/ts", json=body).status_code == 200
    ranking = [i["product_id"] for i in http.get("/exhibitions/new/ranking").json()["items"]]
    best = ranking[4]  # the model ranks it fifth; shoppers click it 40% of the time, the rest 2%
    ctr = {p: (0.4 if p == best else 0.02) for p in ranking}
    rng = np.random.default_rng(1)
    log = RedisEventLog.from_url(STORE_URL, prefix)
    last_round: list[str] = []
    for round_ in range(12):
        events, last_round = [], []
        for v in range(40):
            r = http.get("/exhibitions/new/representative", params={"unit": f"r{round_}-v{v}"}).json()
            product, rid = r["items"][0]["product_id"], r["request_id"]
            last_round.append(product)
            events.append(
                {
                    "event_id": rid + "-i",
                    "type": "impression",
                    "exhibition_id": "new",
                    "product_id": product,
                    "arm": r["arm"],
                    "request_id": rid,
                    "propensity": r["propensity"],
                }
            )
            if rng.random() < ctr[product]:
                events.append(
                    {
                        "event_id": rid + "-c",
                        "type": "click",
                        "exhibition_id": "new",
                        "product_id": product,
                        "arm": r["arm"],
                        "request_id": rid,
                    }
                )
        _post(http, events)
        consume(log, "t", stop_after_idle=0.2)
    assert last_round.count(best) >= 0.75 * len(last_round), Counter(last_round)


def _race_overlapping_puts(server, store, trials: int) -> None:
    """Two experiments over the same exhibition PUT at the same moment by two clients: exactly one
    is accepted, the other gets a 409 naming the winner, and only the winner serves."""
    clients = [server.client(), server.client()]
    for c in clients:  # connections open before the race, so both requests leave together
        assert c.get("/experiments").status_code == 200
    outcomes: Counter = Counter()
    for trial in range(trials):
        exhibition = f"race-{trial}"
        names = [f"race{trial}-a", f"race{trial}-b"]
        body = {"exhibitions": [exhibition], "arms": [{"name": "clik", "share": 1, "policy": "model"}]}
        barrier = threading.Barrier(2)

        def put(i: int, barrier=barrier, names=names, body=body):
            barrier.wait()
            return clients[i].put(f"/experiments/{names[i]}", json=body)

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(put, (0, 1)))
        codes = sorted(a.status_code for a in answers)
        outcomes[tuple(codes)] += 1
        if codes != [200, 409]:
            continue
        winner = names[[a.status_code for a in answers].index(200)]
        loser = names[1 - names.index(winner)]
        refused = answers[names.index(loser)]
        assert winner in refused.json()["detail"]
        assert clients[0].get(f"/experiments/{loser}").status_code == 404  # nothing of it was written
        assert ExperimentRecords(store).bound(exhibition) == winner
    assert outcomes == {(200, 409): trials}, outcomes


@pytest.mark.redis
def test_concurrent_overlapping_puts_accept_exactly_one(redis_api):
    server, _, store = redis_api
    _race_overlapping_puts(server, store, 40)
    ids = set(ExperimentRecords(store).ids())
    assert len([i for i in ids if i.startswith("race")]) == 40  # no lost update of the index either


def test_concurrent_overlapping_puts_accept_exactly_one_embedded(embedded_api):
    server, store = embedded_api
    _race_overlapping_puts(server, store, 40)
    assert len([i for i in ExperimentRecords(store).ids() if i.startswith("race")]) == 40
