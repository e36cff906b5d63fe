"""worker.encode without Celery: an embedded store in a temp dir and the tiny bundle."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from clik.image_source import FetchLimits, ImageLoadError
from indexer.config import EmbeddedStoreConfig
from indexer.embedded_store import EmbeddedStore
from indexer.errors import NoActiveVersion
from indexer.records import ProductStatus
from clik import image_pipeline
from clik.image_source import content_hash
from worker.encode import EncoderCache, encode_products
from worker.settings import WorkerSettings


@pytest.fixture(scope="module")
def encoders():
    return EncoderCache(device="cpu", batch_size=4)


def limits(root) -> FetchLimits:
    return FetchLimits(file_roots=(str(root),))


def test_content_hash_is_the_training_hash():
    from clik import image_pipeline
    from training import features
    from worker import encode

    # One pipeline reads images for the feature cache and for the vector store, one function keys them.
    assert features.ImagePipeline is encode.ImagePipeline is image_pipeline.ImagePipeline
    assert image_pipeline.content_hash is content_hash
    assert content_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    (item,) = image_pipeline.ImagePipeline().read([image_pipeline.ImageItem("k", b"abc")])
    assert item.digest == content_hash(b"abc")


def test_good_images_shared_image_and_every_bad_kind(store, encoders, image_root, outside_file, tiny_bundle):
    v = tiny_bundle.version
    sources = {
        "g0": image_root / "good0.jpg",
        "g1": image_root / "good1.jpg",
        "g0-copy": image_root / "copy_of_good0.jpg",
        "g0-again": f"file://{image_root / 'good0.jpg'}",
        "corrupt": image_root / "corrupt.jpg",
        "text": image_root / "notes.jpg",
        "missing": image_root / "nope.jpg",
        "outside": outside_file,
        "loopback": "http://127.0.0.1:9/a.jpg",
        "metadata": "http://169.254.169.254/latest/x.jpg",
        "scheme": "ftp://example.com/a.jpg",
    }
    for pid, src in sources.items():
        store.put_product(pid, str(src))
    report = encode_products(store, list(sources) + ["never-registered"], encoders, limits(image_root))

    assert sorted(report.encoded) == ["g0", "g0-again", "g0-copy", "g1"]
    assert report.new_vectors == 2  # three products share one image
    assert report.missing == ["never-registered"]
    reasons = {pid: store.get_product(pid).error for pid in report.failed}
    assert set(reasons) == {"corrupt", "text", "missing", "outside", "loopback", "metadata", "scheme"}
    assert "corrupt image" in reasons["corrupt"]
    assert "not an image" in reasons["text"]
    assert "file not found" in reasons["missing"]
    assert "outside the allowed roots" in reasons["outside"]
    assert "refused address 127.0.0.1" in reasons["loopback"]
    assert "refused address 169.254.169.254" in reasons["metadata"]
    assert "unsupported URL scheme" in reasons["scheme"]
    for pid in reasons:
        assert store.get_product(pid).status is ProductStatus.FAILED
    h0 = content_hash((image_root / "good0.jpg").read_bytes())
    for pid in ("g0", "g0-copy", "g0-again"):
        p = store.get_product(pid)
        assert p.status is ProductStatus.ENCODED and p.image_hash == h0
    vec = store.get_vector(v, h0)
    assert vec.shape == (tiny_bundle.embed_dim,)
    assert abs(float(np.linalg.norm(vec.astype(np.float32))) - 1) < 1e-2

    # the same vector as the library's encoder computes
    expected = encoders.get(store.active_version()).encode([image_root / "good0.jpg"]).vectors[0]
    assert np.allclose(vec.astype(np.float32), expected, atol=2e-3)

    # idempotent: running again computes nothing, products stay encoded
    again = encode_products(store, ["g0", "g1", "g0-copy"], encoders, limits(image_root))
    assert again.new_vectors == 0 and again.reused == 3 and sorted(again.encoded) == ["g0", "g0-copy", "g1"]


def test_transient_errors_are_reported_for_retry_not_failed(store, encoders, image_root, monkeypatch):
    store.put_product("ok", str(image_root / "good2.jpg"))
    store.put_product("flaky", "https://images.example.com/a.jpg")
    real = image_pipeline.read_source

    def fake_read(source, lim):
        if source.startswith("https://"):
            raise ImageLoadError("cannot fetch: timed out", transient=True)
        return real(source, lim)

    monkeypatch.setattr(image_pipeline, "read_source", fake_read)
    report = encode_products(store, ["ok", "flaky"], encoders, limits(image_root))
    assert report.encoded == ["ok"] and report.retry == {"flaky": "cannot fetch: timed out"}
    assert store.get_product("flaky").status is ProductStatus.PENDING


def test_no_active_version(tmp_path, encoders):
    s = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path / "empty"))
    s.put_product("p", "/x.jpg")
    with pytest.raises(NoActiveVersion):
        encode_products(s, ["p"], encoders, FetchLimits(file_roots=()))
    s.close()


def test_encoder_cache_loads_once_per_version_and_checks_the_bundle(tiny_bundle, store):
    cache = EncoderCache(device="cpu", max_versions=1)
    version = store.active_version()
    assert cache.get(version) is cache.get(version) and cache.loads == 1
    wrong = type(version)(**{**version.__dict__, "name": "not-this-bundle"})
    with pytest.raises(ValueError, match="expects not-this-bundle"):
        cache.get(wrong)


def test_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.delenv("CLIK_STORE_PREFIX", raising=False)  # another test's config file may leak it
    monkeypatch.setenv("CLIK_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    monkeypatch.setenv("CLIK_FILE_ROOTS", f'["{tmp_path}"]')
    monkeypatch.setenv("CLIK_BATCH_SIZE", "8")
    s = WorkerSettings()
    assert s.broker_url.startswith("amqp://") and s.batch_size == 8
    assert s.fetch_limits().file_roots == (str(tmp_path),)
    assert not s.fetch_limits().allow_private_hosts
    assert WorkerSettings(_env_file=None).store_prefix == "clik:"
    assert s.retry_delay(0) == 2.0 and s.retry_delay(3) == 16.0


def test_device_setup_picks_cpu_threads():
    import os

    import torch

    from worker import device

    before = torch.get_num_threads()
    try:
        assert device.configure("cpu", 1) == "cpu" and torch.get_num_threads() == 1
        device.configure("cpu", None)  # default: one core left for fetching, decoding, the broker
        assert torch.get_num_threads() == max(1, (os.cpu_count() or 2) - 1) == device.default_cpu_threads()
    finally:
        torch.set_num_threads(before)


def test_a_url_urllib_refuses_fails_its_product_not_the_batch(store, encoders, image_root):
    """urllib raises ValueError for some URLs before any fetch limit applies (an unclosed IPv6
    bracket): that product fails with the reason, the batch goes on (before: the whole call raised)."""
    store.put_product("ok", str(image_root / "good3.jpg"))
    store.put_product("bad-url", "http://[::1/x.jpg")
    report = encode_products(store, ["ok", "bad-url"], encoders, limits(image_root), decode_threads=2)
    assert report.encoded == ["ok"]
    assert "invalid URL" in report.failed["bad-url"]
    assert store.get_product("bad-url").status is ProductStatus.FAILED
