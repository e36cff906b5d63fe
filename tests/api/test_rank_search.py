"""POST /rank (URLs from a local HTTP server, uploads), GET /search, /metrics, /readyz."""

from __future__ import annotations

import numpy as np
import pytest

import clik

pytestmark = pytest.mark.redis

TOPIC = {"name": "Colourful blocks", "cat1": "Toys", "kwds": "blocks,colour", "date": "2022-05-05"}


def test_rank_urls_like_the_predictor(env, uid, image_server):
    base, root = image_server
    urls = [f"{base}/img{i}.jpg" for i in range(5)] + [f"{base}/nope.jpg", f"{base}/notes.jpg"]
    r = env.http.post("/rank", json={"topic": TOPIC, "image_urls": urls})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == env.bundle.version
    # the original project's way: the whole model over the image files
    predictor = clik.Predictor.load(env.bundle.path, device="cpu")
    expected = predictor(TOPIC, [root / f"img{i}.jpg" for i in range(5)])
    assert [i["index"] for i in body["items"]] == list(expected.indices)
    assert [i["score"] for i in body["items"]] == pytest.approx(list(expected.scores), abs=2e-3)
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5]
    errors = {e["index"]: e["reason"] for e in body["errors"]}
    assert "HTTP 404" in errors[5] and "not an image" in errors[6]

    top2 = env.http.post("/rank", json={"topic": TOPIC, "image_urls": urls, "topk": 2}).json()
    assert [i["index"] for i in top2["items"]] == list(expected.indices[:2])


def test_rank_reuses_stored_vectors(env, uid, image_server):
    base, _ = image_server
    pid = f"{uid}-p11"
    env.http.put(f"/products/{pid}", json={"image_url": f"{base}/img11.jpg"})
    env.wait_encoded([pid])
    body = env.http.post("/rank", json={"topic": TOPIC, "image_urls": [f"{base}/img11.jpg", f"{base}/img3.jpg"]}).json()
    reused = {i["source"].rsplit("/", 1)[1]: i["reused"] for i in body["items"]}
    assert reused["img11.jpg"] is True


def test_rank_uploads(env, image_server):
    base, root = image_server
    files = [("images", (f"img{i}.jpg", (root / f"img{i}.jpg").read_bytes(), "image/jpeg")) for i in (6, 7)]
    files.append(("images", ("junk.jpg", b"\x00" * 100, "image/jpeg")))
    data = {
        "topic": '{"name": "Colourful blocks", "cat1": "Toys", "kwds": "blocks,colour", "date": "2022-05-05"}',
        "image_urls": [f"{base}/img8.jpg"],
    }
    r = env.http.post("/rank/upload", data=data, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = clik.Predictor.load(env.bundle.path, device="cpu")(
        TOPIC, [root / "img8.jpg", root / "img6.jpg", root / "img7.jpg"]
    )
    assert [i["index"] for i in body["items"]] == list(expected.indices)
    assert [i["source"] for i in body["items"]][0] in (f"{base}/img8.jpg", "img6.jpg", "img7.jpg")
    assert [e["index"] for e in body["errors"]] == [3] and body["errors"][0]["source"] == "junk.jpg"

    r = env.http.post("/rank/upload", data={"topic": "{bad json"}, files=files[:1])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "topic"]
    r = env.http.post("/rank/upload", data={"topic": '{"colour": "red"}'}, files=files[:1])
    assert r.status_code == 422 and "colour" in r.text
    r = env.http.post("/rank/upload", data={"topic": "{}"})
    assert r.status_code == 422 and "images" in r.text


def test_rank_limits_and_refusals(env):
    many = [
        f"http://example.com/{i}.jpg" for i in range(env.server.server.config.app.state.settings.rank_max_images + 1)
    ]
    r = env.http.post("/rank", json={"topic": TOPIC, "image_urls": many})
    assert r.status_code == 422 and "image_urls" in r.text
    r = env.http.post("/rank", json={"topic": TOPIC, "image_urls": ["file:///etc/passwd"]})
    assert r.status_code == 422 and "image_urls" in r.text
    # URLs urllib itself refuses are that image's error, not a failed request
    r = env.http.post("/rank", json={"topic": TOPIC, "image_urls": ["http://127.0.0.1:99999/a.jpg"]})
    assert r.status_code == 200 and "invalid URL" in r.json()["errors"][0]["reason"]


def test_rank_refuses_private_hosts_by_default(api_bundle):
    """Without allow_private_hosts, a URL on this machine is an error of that image, not a fetch."""
    import uuid

    from api.app import create_app
    from tests.support.api_server import ApiServer, api_settings
    from tests.support.services import STORE_URL, delete_keys, redis_or_skip
    from indexer.config import open_store

    redis_or_skip()
    prefix = f"clik-apitest-{uuid.uuid4().hex[:10]}:"
    store = open_store(STORE_URL, prefix=prefix)
    store.register_version(api_bundle.version, api_bundle.embed_dim, bundle_uri=str(api_bundle.path))
    store.activate(api_bundle.version)
    try:
        with ApiServer(create_app(api_settings(prefix, allow_private_hosts=False), store=store)) as server:
            body = (
                server.client().post("/rank", json={"topic": TOPIC, "image_urls": ["http://127.0.0.1:9/a.jpg"]}).json()
            )
            assert body["items"] == [] and "refused address 127.0.0.1" in body["errors"][0]["reason"]
    finally:
        store.close()
        delete_keys(STORE_URL, prefix + "*")


def test_search_finds_products_and_follows_the_catalogue(env, uid, image_server):
    base, _ = image_server
    ids = [f"{uid}-s{i}" for i in range(3)]
    for n, pid in enumerate(ids):
        env.http.put(f"/products/{pid}", json={"image_url": f"{base}/img{n}.jpg"})
    env.wait_encoded(ids)
    r = env.http.get("/search", params={"q": "colourful blocks", "k": 100})
    assert r.status_code == 200, r.text
    body = r.json()
    found = [i["product_id"] for i in body["items"]]
    assert set(ids) <= set(found)
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True) and [i["rank"] for i in body["items"]][:2] == [1, 2]
    # scores are cosines of the stored vectors with the text query
    from clik.encoders import TopicEncoder

    q = TopicEncoder.load(env.bundle.path, device="cpu").query({"name": "colourful blocks"})
    q = q / np.linalg.norm(q)
    vec = env.store.get_vector(env.bundle.version, env.store.get_product(ids[0]).image_hash)
    assert dict(zip(found, scores))[ids[0]] == pytest.approx(float(vec.astype(np.float32) @ q), abs=2e-3)
    # a deleted product leaves the search results (the index is rebuilt from the store)
    env.http.delete(f"/products/{ids[0]}")
    found = [
        i["product_id"] for i in env.http.get("/search", params={"q": "colourful blocks", "k": 100}).json()["items"]
    ]
    assert ids[0] not in found and ids[1] in found


def test_readyz_and_metrics(env, uid):
    ready = env.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["model_version"] == env.bundle.version and ready.json()["status"] == "ready"
    env.http.put(f"/exhibitions/{uid}", json={"topic": {"name": f"metrics {uid}"}})
    for _ in range(3):
        env.http.get(f"/exhibitions/{uid}/representative")
    env.http.get(f"/exhibitions/{uid}-nope/representative")
    text = env.http.get("/metrics").text
    assert (
        'clik_api_request_seconds_count{method="GET",route="/exhibitions/{exhibition_id}/representative",status="200"}'
    ) in text
    assert 'route="/exhibitions/{exhibition_id}/representative",status="404"' in text
    # the topic was read once (encoded here, or precomputed by the worker after the PUT); the
    # later reads were answered from this process's rendered answer without looking at it
    assert 'clik_api_topic_cache_total{result="miss"}' in text or 'clik_api_topic_cache_total{result="store"}' in text
    assert 'clik_api_answers_total{source="memory"}' in text
    assert 'clik_api_errors_total{kind="ExhibitionNotFound",status="404"}' in text
    assert "clik_api_encodes_submitted_total" in text and "clik_api_loaded_models 1.0" in text
    assert "clik_api_pending_encodes" in text
