"""The API over the embedded (sqlite) store with an injected queue, as the single-machine demo
runs it: the queue hands ids to the real encoding code (worker.encode) in this process."""

from __future__ import annotations

from indexer.config import EmbeddedStoreConfig
from indexer.embedded_store import EmbeddedStore
from tests.support.api_server import API_KEY, ApiServer, InlineEncodeQueue


def test_embedded_store_and_injected_queue(api_bundle, image_server, tmp_path):
    from api.app import create_app
    from api.settings import ApiSettings

    _, root = image_server
    store = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path / "store"))
    store.register_version(api_bundle.version, api_bundle.embed_dim, bundle_uri=str(api_bundle.path))
    store.activate(api_bundle.version)
    queue = InlineEncodeQueue(store, root)
    settings = ApiSettings(
        _env_file=None, store_url=str(tmp_path / "unused"), api_keys=[API_KEY], device="cpu", catalogue_min_rebuild_s=0
    )
    with ApiServer(create_app(settings, store=store, encode_queue=queue)) as server:
        http = server.client()
        r = http.put(
            "/products",
            json={"products": [{"product_id": f"p{i}", "image_url": str(root / f"img{i}.jpg")} for i in range(4)]},
        )
        assert r.status_code == 202 and r.json()["queued"] == ["p0", "p1", "p2", "p3"]
        assert queue.submitted == [["p0", "p1", "p2", "p3"]]
        assert {http.get(f"/products/p{i}").json()["status"] for i in range(4)} == {"encoded"}
        http.put("/exhibitions/e", json={"topic": {"name": "blocks"}, "product_ids": ["p0", "p1", "p2", "p3"]})
        rep = http.get("/exhibitions/e/representative", params={"topk": 4}).json()
        assert sorted(i["product_id"] for i in rep["items"]) == ["p0", "p1", "p2", "p3"]
        assert rep["model_version"] == api_bundle.version
        assert len(http.get("/search", params={"q": "blocks", "k": 10}).json()["items"]) == 4
        assert http.get("/readyz").status_code == 200
    store.close()  # injected: the app left it open
