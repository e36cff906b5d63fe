"""/readyz tells the truth about coverage: a version that cannot rank the catalogue is not ready
(real HTTP, the embedded store, real images encoded by the worker code)."""

from __future__ import annotations

import time

from tests.support.api_server import API_KEY, ApiServer
from tests.support.bundles import tiny_bundle
from tests.support.api_server import InlineEncodeQueue
from tests.support.worker_harness import wait_for


def test_readyz_reports_coverage_and_fails_below_the_share(api_bundle, image_server, tmp_path):
    from api.app import create_app
    from api.settings import ApiSettings
    from indexer.config import EmbeddedStoreConfig
    from indexer.embedded_store import EmbeddedStore

    _, root = image_server
    store = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path / "store"))
    store.register_version(api_bundle.version, api_bundle.embed_dim, bundle_uri=str(api_bundle.path))
    store.activate(api_bundle.version)
    settings = ApiSettings(
        _env_file=None,
        store_url=str(tmp_path / "unused"),
        api_keys=[API_KEY],
        device="cpu",
        coverage_refresh_s=0,
        ready_min_coverage=0.5,
    )
    with ApiServer(create_app(settings, store=store, encode_queue=InlineEncodeQueue(store, root))) as server:
        http = server.client()
        assert http.get("/readyz").json()["coverage"] == {"products": 0, "with_vectors": 0, "failed": 0, "share": 1.0}
        # The text side loads in the background; on a busy machine it was not loaded yet when
        # the 200 below was asked for (1 run in 4 here, on main too). This test is about coverage.
        wait_for(
            lambda: api_bundle.version in http.get("/readyz").json()["loaded_versions"],
            60,
            "the active version's text side to load",
        )
        http.put(
            "/products",
            json={
                "products": [{"product_id": f"p{i}", "image_url": str(root / f"img{i}.jpg")} for i in range(4)]
                + [{"product_id": "broken", "image_url": str(root / "missing.jpg")}]
            },
        )
        deadline = time.monotonic() + 60
        while (ready := http.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)  # the text side loads in the background (slow on a busy machine)
        assert ready.status_code == 200, ready.text
        # the broken image is reported, and does not count against the version
        assert ready.json()["coverage"] == {"products": 5, "with_vectors": 4, "failed": 1, "share": 1.0}
        assert "clik_active_version_coverage_ratio 1.0" in http.get("/metrics").text

        # A version switched to without its vectors (what a bad rollout did): not ready, and why.
        other = tiny_bundle(tmp_path / "other", seed=7)
        store.register_version(other.version, other.embed_dim, bundle_uri=str(other.path))
        store.activate(other.version)
        ready = http.get("/readyz")
        assert ready.status_code == 503, ready.text
        body = ready.json()
        assert body["coverage"]["with_vectors"] == 0 and body["coverage"]["share"] == 0.0
        assert any("covers 0 of 4 rankable products (0%), below the required 50%" in p for p in body["problems"])
        assert "clik_active_version_coverage_ratio 0.0" in http.get("/metrics").text
    store.close()
