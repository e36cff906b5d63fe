"""Merchandiser controls over real HTTP (uvicorn), the embedded store and the real encoding
code: pins keep positions, blocks and sold-out products never appear, boosts move products as
configured, the diverse selection keeps one image per family and drops near-duplicates, and
every override change is audited with the key's name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from clik.image_source import FetchLimits
from indexer.config import EmbeddedStoreConfig
from indexer.embedded_store import EmbeddedStore
from tests.support.api_server import API_KEY, ApiServer
from tests.support.api_server import InlineEncodeQueue

# The H&M development set lives beside the checkout (../shared/data/hm), never in the repository;
# CLIK_HM_DATA points elsewhere. Tests that need it skip on a machine without it.
_ROOT = Path(__file__).resolve().parents[2]
HM = next(
    (
        p
        for p in (
            Path(os.environ.get("CLIK_HM_DATA", "/nonexistent")),
            _ROOT.parent / "shared" / "data" / "hm",
            Path("/work/shared/data/hm"),
        )
        if (p / "articles.csv").is_file()
    ),
    Path("/nonexistent"),
)


@pytest.fixture
def server(api_bundle, image_server, tmp_path):
    from api.app import create_app
    from api.settings import ApiSettings

    _, root = image_server
    store = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path / "store"))
    store.register_version(api_bundle.version, api_bundle.embed_dim, bundle_uri=str(api_bundle.path))
    store.activate(api_bundle.version)
    settings = ApiSettings(
        _env_file=None,
        store_url=str(tmp_path / "unused"),
        api_keys=[API_KEY, "other-key"],
        api_key_names={API_KEY: "alice"},
        device="cpu",
        catalogue_min_rebuild_s=0,
        # the random tiny model puts every picture within cosine 0.92-0.99 of
        # the others: only a copy of one image counts as a duplicate here
        diverse_duplicate_threshold=0.999,
    )
    queue = InlineEncodeQueue(store, root)
    queue.limits = FetchLimits(file_roots=(str(root), str(HM)))
    with ApiServer(create_app(settings, store=store, encode_queue=queue)) as srv:
        srv.root, srv.store = root, store
        yield srv
    store.close()


def _load(http, root, n=10, attrs=None, exhibition="e"):
    attrs = attrs or {}
    r = http.put(
        "/products",
        json={
            "products": [
                {"product_id": f"p{i}", "image_url": str(root / f"img{i}.jpg"), "attrs": attrs.get(f"p{i}", {})}
                for i in range(n)
            ]
        },
    )
    assert r.status_code == 202, r.text
    r = http.put(
        f"/exhibitions/{exhibition}", json={"topic": {"name": "blocks"}, "product_ids": [f"p{i}" for i in range(n)]}
    )
    assert r.status_code == 200, r.text


def _ids(http, path="/exhibitions/e/representative", **params):
    r = http.get(path, params=params)
    assert r.status_code == 200, r.text
    return [i["product_id"] for i in r.json()["items"]]


def test_pins_keep_positions_and_blocks_never_appear(server):
    http = server.client()
    _load(http, server.root)
    plain = _ids(http, "/exhibitions/e/ranking", limit=10)
    last, second_last, top = plain[-1], plain[-2], plain[0]
    r = http.put("/exhibitions/e/overrides", json={"pinned": {last: 1, second_last: 4}, "blocked": [top]})
    assert r.status_code == 200, r.text
    page = http.get("/exhibitions/e/ranking", params={"limit": 10}).json()
    ids = [i["product_id"] for i in page["items"]]
    assert ids[0] == last and ids[3] == second_last and top not in ids and len(ids) == 9
    assert [i["pinned"] for i in page["items"]][:4] == [True, False, False, True]
    assert page["blocked"] == [top]
    assert [i["rank"] for i in page["items"]] == list(range(1, 10))
    # the rest keeps the model's order
    assert [p for p in ids if p not in (last, second_last)] == [p for p in plain if p not in (last, second_last, top)]
    assert _ids(http, topk=1) == [last]
    # paging sees the same merged order
    assert _ids(http, "/exhibitions/e/ranking", offset=3, limit=2) == ids[3:5]
    # diverse honours pins and blocks too
    div = _ids(http, topk=5, diverse="true")
    assert div[0] == last and div[3] == second_last and top not in div


def test_overrides_audit_get_delete_and_bad_input(server):
    http = server.client()
    _load(http, server.root, n=4)
    assert http.put("/exhibitions/e/overrides", json={"blocked": ["p1"]}).status_code == 200
    other = server.client(key="other-key")
    assert other.put("/exhibitions/e/overrides", json={"pinned": {"p2": 1}}).status_code == 200
    got = http.get("/exhibitions/e/overrides").json()
    assert got["pinned"] == {"p2": 1} and got["blocked"] == []
    assert [h["by"] for h in got["history"]] == ["alice", got["updated_by"]]
    assert got["updated_by"].startswith("key-") and "other-key" not in str(got)
    assert all(h["at"] > 0 for h in got["history"])
    # bad input: 4xx naming the field, never 500
    r = http.put("/exhibitions/e/overrides", json={"pinned": {"nope": 1}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "pinned"]
    r = http.put("/exhibitions/e/overrides", json={"pinned": {"p1": 0}})
    assert r.status_code == 422 and "pinned" in str(r.json())
    r = http.put("/exhibitions/e/overrides", json={"pinned": {"p1": 1}, "blocked": ["p1"]})
    assert r.status_code == 422 and "blocked" in r.text
    r = http.put("/exhibitions/e/overrides", json={"pinned": {"p1": 2, "p2": 2}})
    assert r.status_code == 422 and "pinned" in r.text
    r = http.put("/exhibitions/e/overrides", json={"boosts": {"margin": "lots"}})
    assert r.status_code == 422 and "boosts" in str(r.json())
    assert http.put("/exhibitions/nope/overrides", json={}).status_code == 404
    assert server.client(key=None).put("/exhibitions/e/overrides", json={}).status_code == 401
    assert server.client(key="wrong").delete("/exhibitions/e/overrides").status_code == 403
    assert http.delete("/exhibitions/e/overrides").status_code == 204
    got = http.get("/exhibitions/e/overrides").json()
    assert got["pinned"] == {} and got["history"][-1]["action"] == "delete"


def test_products_leaving_the_exhibition_leave_its_overrides(server):
    http = server.client()
    _load(http, server.root, n=5)
    http.put("/exhibitions/e/overrides", json={"pinned": {"p4": 1}, "blocked": ["p0", "p1"]})
    http.put("/exhibitions/e", json={"topic": {"name": "blocks"}, "product_ids": ["p1", "p2", "p3"]})
    got = http.get("/exhibitions/e/overrides").json()
    assert got["pinned"] == {} and got["blocked"] == ["p1"]
    assert got["history"][-1]["action"].startswith("pruned")
    # deleted and made again: no pins or blocks inherited
    assert http.delete("/exhibitions/e").status_code == 204
    http.put("/exhibitions/e", json={"topic": {"name": "blocks"}, "product_ids": ["p1", "p2", "p3"]})
    got = http.get("/exhibitions/e/overrides").json()
    assert got["blocked"] == [] and len(got["history"]) == 3


def test_sold_out_and_hidden_products_are_never_the_hero_image(server):
    http = server.client()
    _load(http, server.root, n=6)
    plain = _ids(http, "/exhibitions/e/ranking", limit=6)
    hero, second = plain[0], plain[1]
    http.put(
        f"/products/{hero}", json={"image_url": str(server.root / f"img{hero[1:]}.jpg"), "attrs": {"available": False}}
    )
    http.put(
        f"/products/{second}", json={"image_url": str(server.root / f"img{second[1:]}.jpg"), "attrs": {"hidden": True}}
    )
    # even pinned at 1, a sold-out product is not shown
    http.put("/exhibitions/e/overrides", json={"pinned": {hero: 1}})
    rep = http.get("/exhibitions/e/representative", params={"topk": 6}).json()
    ids = [i["product_id"] for i in rep["items"]]
    assert ids == plain[2:] and sorted(rep["unavailable"]) == sorted([hero, second])
    assert hero not in _ids(http, topk=6, diverse="true")
    # back in stock: back in the ranking
    http.put(
        f"/products/{hero}", json={"image_url": str(server.root / f"img{hero[1:]}.jpg"), "attrs": {"available": True}}
    )
    assert _ids(http, topk=1) == [hero]
    r = http.put("/products/p0", json={"image_url": str(server.root / "img0.jpg"), "attrs": {"sold_out": "yes"}})
    assert r.status_code == 422 and "sold_out" in r.text
    # sold out through another writer of the store (another API process, an import): gone with
    # the very next request, no cache to wait for
    server.store.put_product(hero, str(server.root / f"img{hero[1:]}.jpg"), {"sold_out": True})
    assert hero not in _ids(http, topk=6)


def test_boosts_move_products_and_show_in_the_explained_score(server):
    http = server.client()
    _load(http, server.root, n=6)
    plain = http.get("/exhibitions/e/ranking", params={"limit": 6}).json()["items"]
    last = plain[-1]
    gap = plain[0]["score"] - last["score"]
    http.put(
        f"/products/{last['product_id']}",
        json={
            "image_url": str(server.root / f"img{last['product_id'][1:]}.jpg"),
            "attrs": {"margin": 2.0, "title": "x"},
        },
    )
    assert _ids(http, topk=1) != [last["product_id"]]  # no weights yet: no effect
    r = http.put("/exhibitions/e/overrides", json={"boosts": {"margin": gap}})  # 2 * gap: above the top
    assert r.json()["boosts_in_force"] == {"margin": gap}
    top = http.get("/exhibitions/e/representative", params={"topk": 2}).json()["items"]
    assert top[0]["product_id"] == last["product_id"]
    assert top[0]["boosts"] == {"margin": pytest.approx(2 * gap, rel=1e-5)}
    assert top[0]["score"] == pytest.approx(last["score"] + 2 * gap, rel=1e-5)
    assert top[1]["boosts"] == {}
    http.put("/exhibitions/e/overrides", json={"boosts": {"margin": -gap}})  # a penalty
    assert _ids(http, "/exhibitions/e/ranking", limit=6)[-1] == last["product_id"]


def test_diverse_keeps_one_per_family_and_drops_near_duplicates(server, image_server):
    http = server.client()
    _, root = image_server
    dup = root / "img0-copy.jpg"
    shutil.copy(root / "img0.jpg", dup)
    families = {f"p{i}": {"family": "A" if i < 5 else f"F{i}"} for i in range(10)}
    _load(http, root, n=10, attrs=families)
    http.put("/products/p10", json={"image_url": str(dup)})  # same picture as p0, no family
    http.put("/exhibitions/e", json={"topic": {"name": "blocks"}, "product_ids": [f"p{i}" for i in range(11)]})
    rep = http.get("/exhibitions/e/representative", params={"topk": 6, "diverse": "true"}).json()
    ids = [i["product_id"] for i in rep["items"]]
    plain = _ids(http, topk=1)
    assert rep["diverse"] is True and ids[0] == plain[0]  # the first pick is unchanged
    fams = [families.get(p, {}).get("family", p) for p in ids]
    assert len(ids) == 6 and len(set(fams)) == 6
    assert not {"p0", "p10"} <= set(ids)
    everything = _ids(http, "/exhibitions/e/ranking", limit=11, diverse="true")
    # one of family A, F5..F9, and p10 unless the A pick is p0 (the same picture): the rules
    # leave no more, so fewer than the 11 asked for come back
    assert len([p for p in everything if families.get(p, {}).get("family") == "A"]) == 1
    assert len(everything) == (6 if "p0" in everything else 7) and not {"p0", "p10"} <= set(everything)
    r = http.get("/exhibitions/e/ranking", params={"limit": 200, "diverse": "true"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "diverse"]


@pytest.mark.skipif(not (HM / "articles.csv").is_file(), reason="H&M sample not present")
def test_diverse_removes_colourway_duplicates_on_real_hm_photos(server):
    import pandas as pd

    articles = pd.read_csv(HM / "articles.csv", dtype=str, usecols=["article_id", "product_code", "product_type_name"])
    articles = articles[articles.product_type_name == "Trousers"]
    sizes = articles.groupby("product_code").size()
    big = list(sizes[sizes >= 5].index[:3])  # three garments in 5+ colourways each
    singles = list(sizes[sizes == 1].index[:3])
    rows = articles[articles.product_code.isin(big)].groupby("product_code").head(5)
    rows = pd.concat([rows, articles[articles.product_code.isin(singles)]])
    http = server.client()
    r = http.put(
        "/products",
        json={
            "products": [
                {"product_id": a, "image_url": str(HM / "images" / f"{a}.jpg"), "attrs": {"family": c}}
                for a, c in zip(rows.article_id, rows.product_code)
            ]
        },
    )
    assert r.status_code == 202, r.text
    http.put("/exhibitions/hm", json={"topic": {"name": "Trousers"}, "product_ids": list(rows.article_id)})
    family = dict(zip(rows.article_id, rows.product_code))
    plain = _ids(http, "/exhibitions/hm/representative", topk=5)
    diverse = _ids(http, "/exhibitions/hm/representative", topk=5, diverse="true")
    assert diverse[0] == plain[0]
    assert len({family[p] for p in diverse}) == 5
    assert len({family[p] for p in plain}) < 5  # 15 of the 18 photos are colourways of 3 garments
