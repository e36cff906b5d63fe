"""The API follows the store's active version (a re-index switched it) without a restart,
keeping at most two text sides loaded; topic queries are cached per version."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from clik.encoders import TopicEncoder
from tests.support.api_server import ApiServer, api_settings
from tests.support.bundles import tiny_bundle
from tests.support.services import STORE_URL, delete_keys, redis_or_skip

pytestmark = pytest.mark.redis
TOPIC = {"name": "Garden furniture", "cat1": "Home", "date": "2022-04-01"}


def _fill(store, version: str, dim: int, n: int, seed: int) -> np.ndarray:
    """n encoded products with random unit vectors (what a re-index would have written)."""
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store.put_vectors(version, [(f"h{i}", vecs[i]) for i in range(n)])
    return vecs


def _expected(bundle, vecs: np.ndarray) -> dict[str, float]:
    """Each product's appeal with that version's own query (the ranking then adds topic fit)."""
    q = TopicEncoder.load(bundle.path, device="cpu").query(TOPIC)
    return {f"p{i}": float(a) for i, a in enumerate(vecs.astype(np.float16).astype(np.float32) @ q)}


def test_active_version_switch_is_followed(api_bundle, api_bundle2, tmp_path):
    redis_or_skip()
    from api.app import create_app
    from indexer.config import open_store

    third = tiny_bundle(tmp_path / "third", seed=2)
    prefix = f"clik-apitest-{uuid.uuid4().hex[:10]}:"
    store = open_store(STORE_URL, prefix=prefix)
    try:
        n = 20
        store.import_products([(f"p{i}", f"http://img.example/{i}.jpg", f"h{i}") for i in range(n)])
        store.put_exhibition("e", TOPIC, [f"p{i}" for i in range(n)])
        vecs = {}
        for b, seed in ((api_bundle, 1), (api_bundle2, 2), (third, 3)):
            store.register_version(b.version, b.embed_dim, bundle_uri=str(b.path))
            vecs[b.version] = _fill(store, b.version, b.embed_dim, n, seed)
        store.activate(api_bundle.version)

        with ApiServer(create_app(api_settings(prefix))) as server:
            http = server.client()

            def ranking() -> tuple[str, dict[str, float]]:
                body = http.get("/exhibitions/e/ranking", params={"limit": n}).json()
                return body["model_version"], pytest.approx(
                    {i["product_id"]: i["appeal"] for i in body["items"]}, abs=2e-3
                )

            assert ranking() == (api_bundle.version, _expected(api_bundle, vecs[api_bundle.version]))
            store.activate(api_bundle2.version)  # the re-index job's atomic switch
            assert ranking() == (api_bundle2.version, _expected(api_bundle2, vecs[api_bundle2.version]))
            # asking for the old version explicitly is a conflict now
            assert http.get("/exhibitions/e/ranking", params={"model_version": api_bundle.version}).status_code == 409
            store.activate(third.version)
            assert ranking() == (third.version, _expected(third, vecs[third.version]))
            loaded = http.get("/readyz").json()["loaded_versions"]
            assert loaded == [api_bundle2.version, third.version]  # at most two, oldest dropped
            # each version's topic query was cached in the store under that version
            assert store.get_topic_embedding(api_bundle2.version, _key()) is not None
            store.activate(api_bundle.version)  # back again: reloaded from its bundle
            assert ranking() == (api_bundle.version, _expected(api_bundle, vecs[api_bundle.version]))
    finally:
        store.close()
        delete_keys(STORE_URL, prefix + "*")


def _key() -> str:
    from api.topics import cache_key, clean_topic

    return "qt:" + cache_key(clean_topic(TOPIC))  # the service caches query and topic embedding
