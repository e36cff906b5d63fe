"""product -> encoded by the real worker -> exhibition -> representative, over real HTTP."""

from __future__ import annotations

import numpy as np
import pytest

from clik.encoders import TopicEncoder

pytestmark = pytest.mark.redis

TOPIC = {"name": "Summer linen shirts", "cat1": "Fashion", "cat2": "Men", "kwds": "linen,summer", "date": "2022-06-01"}


def _put_products(env, uid: str, images: list[int]) -> list[str]:
    ids = []
    for i in images:
        pid = f"{uid}-p{i}"
        r = env.http.put(
            f"/products/{pid}",
            json={"image_url": f"{env.images}/img{i}.jpg", "attrs": {"title": f"shirt {i}", "price": 10 + i}},
        )
        assert r.status_code == 202, r.text
        assert r.json() == {"product_id": pid, "status": "pending", "queued": True}
        ids.append(pid)
    return ids


def _expected_order(env, topic: dict, product_ids: list[str]) -> tuple[list[str], dict[str, float]]:
    """The ranking recomputed here: the bundle's own text side, the vectors in the store, the
    topic-fit gate with the bundle's calibration. Returns the order and each product's appeal."""
    from clik.topic_fit import DEFAULT_FIT, TopicFit, product_features, score_products

    encoder = TopicEncoder.load(env.bundle.path, device="cpu")
    emb, query = encoder.embeddings_and_queries([topic])
    query = query[0] / np.linalg.norm(query[0])
    vecs = np.stack(
        [
            env.store.get_vector(env.bundle.version, env.store.get_product(pid).image_hash).astype(np.float32)
            for pid in product_ids
        ]
    )
    appeal = vecs @ query
    fit = TopicFit.from_dict(encoder.info.topic_fit) if encoder.info.topic_fit else DEFAULT_FIT
    score = score_products(appeal, product_features(vecs, emb[0]), fit).score
    order = [product_ids[i] for i in np.argsort(-score, kind="stable")]
    return order, {pid: float(a) for pid, a in zip(product_ids, appeal)}


def test_product_encoded_then_exhibition_representative(env, uid):
    ids = _put_products(env, uid, [0, 1, 2, 3])
    products = env.wait_encoded(ids)
    assert all(p["status"] == "encoded" and p["image_hash"] for p in products.values())
    assert products[ids[1]]["attrs"] == {"title": "shirt 1", "price": 11}
    assert products[ids[1]]["image_url"].endswith("/img1.jpg")

    # the same image again: not queued (nothing to encode); new attrs are kept
    r = env.http.put(f"/products/{ids[0]}", json={"image_url": f"{env.images}/img0.jpg", "attrs": {"title": "renamed"}})
    assert r.status_code == 202 and r.json()["queued"] is False and r.json()["status"] == "encoded"
    assert env.http.get(f"/products/{ids[0]}").json()["attrs"] == {"title": "renamed"}

    eid = f"{uid}-ex"
    r = env.http.put(f"/exhibitions/{eid}", json={"topic": TOPIC, "product_ids": ids + [f"{uid}-never"]})
    assert r.status_code == 200, r.text
    assert r.json()["product_ids"] == ids + [f"{uid}-never"]
    assert env.http.get(f"/exhibitions/{eid}").json()["topic"]["name"] == TOPIC["name"]

    order, scores = _expected_order(env, TOPIC, ids)
    rep = env.http.get(f"/exhibitions/{eid}/representative").json()
    assert rep["exhibition_id"] == eid and rep["model_version"] == env.bundle.version
    assert [i["product_id"] for i in rep["items"]] == order[:1]
    assert rep["items"][0]["rank"] == 1
    assert rep["items"][0]["appeal"] == pytest.approx(scores[order[0]], abs=2e-3)  # fp16 vectors
    assert rep["unknown"] == [f"{uid}-never"] and rep["pending"] == [] and rep["failed"] == []
    assert rep["total_scored"] == 4
    # every item explained: appeal (CLIK), topic fit (calibrated probability), the flag, the score
    full = env.http.get(f"/exhibitions/{eid}/ranking").json()
    assert all(0.0 <= i["topic_fit"] <= 1.0 for i in full["items"])
    assert sorted(i["product_id"] for i in full["items"] if i["off_topic"]) == sorted(full["off_topic"])
    assert all(i["off_topic"] == (i["topic_fit"] < full["topic_fit_threshold"]) for i in full["items"])
    assert full["all_off_topic"] == (len(full["off_topic"]) == full["total_scored"])
    if not full["all_off_topic"]:
        assert not full["items"][0]["off_topic"]  # a flagged product is never first

    top3 = env.http.get(f"/exhibitions/{eid}/representative", params={"topk": 3}).json()
    assert [i["product_id"] for i in top3["items"]] == order[:3]

    # the whole ranking in pages of 3 is the same order
    page1 = env.http.get(f"/exhibitions/{eid}/ranking", params={"offset": 0, "limit": 3}).json()
    page2 = env.http.get(f"/exhibitions/{eid}/ranking", params={"offset": 3, "limit": 3}).json()
    assert [i["product_id"] for i in page1["items"] + page2["items"]] == order
    assert [i["rank"] for i in page2["items"]] == [4]
    assert (page2["offset"], page2["limit"]) == (3, 3)


def test_changing_an_exhibition_changes_its_ranking(env, uid):
    first = _put_products(env, uid, [4, 5, 6])
    second = _put_products(env, uid, [7, 8, 9])
    env.wait_encoded(first + second)
    eid = f"{uid}-ex"
    env.http.put(f"/exhibitions/{eid}", json={"topic": TOPIC, "product_ids": first})
    rep = env.http.get(f"/exhibitions/{eid}/representative", params={"topk": 3}).json()
    assert {i["product_id"] for i in rep["items"]} == set(first)

    # swap the product list: the ranking follows at once
    env.http.put(f"/exhibitions/{eid}", json={"topic": TOPIC, "product_ids": second})
    rep = env.http.get(f"/exhibitions/{eid}/representative", params={"topk": 3}).json()
    assert [i["product_id"] for i in rep["items"]] == _expected_order(env, TOPIC, second)[0]

    # another topic: a new query, scores computed for it
    other = {"name": "Winter wool coats", "cat1": "Fashion", "kwds": "wool,coat", "date": "2022-12-01"}
    env.http.put(f"/exhibitions/{eid}", json={"topic": other, "product_ids": second})
    rep = env.http.get(f"/exhibitions/{eid}/representative", params={"topk": 3}).json()
    order, scores = _expected_order(env, other, second)
    assert [i["product_id"] for i in rep["items"]] == order
    assert [i["appeal"] for i in rep["items"]] == pytest.approx([scores[p] for p in order], abs=2e-3)

    # a product whose image changes goes back to pending, then is ranked with its new image
    env.http.put(f"/products/{second[0]}", json={"image_url": f"{env.images}/img10.jpg"})
    env.wait_encoded([second[0]])
    rep = env.http.get(f"/exhibitions/{eid}/ranking").json()
    assert {i["product_id"] for i in rep["items"]} == set(second)
    assert [i["product_id"] for i in rep["items"]] == _expected_order(env, other, second)[0]

    assert env.http.delete(f"/exhibitions/{eid}").status_code == 204
    assert env.http.get(f"/exhibitions/{eid}").status_code == 404
    assert env.http.get(f"/exhibitions/{eid}/representative").status_code == 404


def test_failed_and_pending_products_are_reported(env, uid):
    good = _put_products(env, uid, [0])
    bad = {f"{uid}-missing": f"{env.images}/nope.jpg", f"{uid}-text": f"{env.images}/notes.jpg"}
    for pid, url in bad.items():
        assert env.http.put(f"/products/{pid}", json={"image_url": url}).status_code == 202
    products = env.wait_encoded(good + list(bad))
    assert products[f"{uid}-missing"]["status"] == "failed"
    assert "HTTP 404" in products[f"{uid}-missing"]["error"]
    assert "not an image" in products[f"{uid}-text"]["error"]
    eid = f"{uid}-ex"
    env.http.put(f"/exhibitions/{eid}", json={"topic": TOPIC, "product_ids": good + list(bad)})
    rep = env.http.get(f"/exhibitions/{eid}/representative").json()
    assert [i["product_id"] for i in rep["items"]] == good
    assert sorted(rep["failed"]) == sorted(bad)
    # a failed product PUT again with the same URL is queued again (the image may be back)
    r = env.http.put(f"/products/{uid}-missing", json={"image_url": f"{env.images}/nope.jpg"})
    assert r.json()["queued"] is True


def test_batch_put_and_delete_products(env, uid):
    items = [
        {"product_id": f"{uid}-b{i}", "image_url": f"{env.images}/img{i}.jpg", "attrs": {"i": i}} for i in range(3)
    ]
    r = env.http.put("/products", json={"products": items})
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 3, "queued": [f"{uid}-b{i}" for i in range(3)]}
    env.wait_encoded([f"{uid}-b{i}" for i in range(3)])
    r = env.http.put("/products", json={"products": items})
    assert r.json() == {"accepted": 3, "queued": []}  # all encoded already
    assert env.http.delete(f"/products/{uid}-b0").status_code == 204
    assert env.http.get(f"/products/{uid}-b0").status_code == 404
    assert env.http.delete(f"/products/{uid}-b0").status_code == 404


def test_product_image_is_served(env, uid, image_server):
    [pid] = _put_products(env, uid, [2])
    r = env.http.get(f"/products/{pid}/image")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == (image_server[1] / "img2.jpg").read_bytes()
    env.http.put(f"/products/{uid}-txt", json={"image_url": f"{env.images}/notes.jpg"})
    r = env.http.get(f"/products/{uid}-txt/image")
    assert r.status_code == 422 and "not an image" in r.json()["detail"]
    env.http.put(f"/products/{uid}-gone", json={"image_url": f"{env.images}/gone.jpg"})
    r = env.http.get(f"/products/{uid}-gone/image")
    assert r.status_code == 422 and "HTTP 404" in r.json()["detail"]
    assert env.http.get(f"/products/{uid}-unknown/image").status_code == 404


def test_list_exhibitions(env, uid):
    for n in range(3):
        env.http.put(
            f"/exhibitions/{uid}-list{n}",
            json={"topic": {"name": f"topic {n}"}, "product_ids": [f"x{k}" for k in range(n)]},
        )
    body = env.http.get("/exhibitions", params={"limit": 1000}).json()
    mine = [e for e in body["items"] if e["exhibition_id"].startswith(f"{uid}-list")]
    assert [(e["name"], e["products"]) for e in mine] == [("topic 0", 0), ("topic 1", 1), ("topic 2", 2)]
    assert body["total"] >= 3
    page = env.http.get("/exhibitions", params={"offset": 1, "limit": 1}).json()
    assert len(page["items"]) == 1 and page["items"][0] == body["items"][1]
