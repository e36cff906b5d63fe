"""The image tower under ONNX Runtime gives the eager tower's vectors within fp16 rounding.

Marked slow: exporting a tower takes tens of seconds on the shared 2-core machine (one export
per module here, cached as a worker would cache it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import clik
from clik.image_source import FetchLimits
from clik.onnx_tower import export_key
from clik.encoders import ImageEncoder, pick_backend

pytestmark = pytest.mark.slow
pytest.importorskip("onnxruntime")

# Vectors are unit norm and stored as fp16, whose spacing just below 1.0 is 2**-11 (4.9e-4):
# the two runtimes must agree to within about two such steps.
FP16_TOLERANCE = 1e-3
HM_IMAGES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hm" / "images"


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    torch.manual_seed(0)
    model = clik.ClikModel(clik.get_model_config("clik-tiny-test"), load_weights=False).eval()
    return clik.export_bundle(model, clik.create_tokenizer(model), tmp_path_factory.mktemp("onnx") / "tiny")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def both(tiny_bundle, cache_dir):
    eager = ImageEncoder.load(tiny_bundle.path, device="cpu", batch_size=3)
    onnx = ImageEncoder.load(tiny_bundle.path, device="cpu", batch_size=3, backend="onnx", onnx_cache_dir=cache_dir)
    return eager, onnx


def test_onnx_vectors_match_eager_within_fp16(both, photo_files):
    eager, onnx = both
    assert (eager.backend, onnx.backend) == ("torch", "onnx")
    sources = [photo_files[n] for n in ("chelsea", "coffee", "rocket", "astronaut", "coffee_png")]
    a, b = eager.encode(sources), onnx.encode(sources)  # batches of 3 and 2: any batch size works
    assert a.indices == b.indices == [0, 1, 2, 3, 4]
    assert np.abs(a.vectors - b.vectors).max() < FP16_TOLERANCE
    np.testing.assert_allclose(np.linalg.norm(b.vectors, axis=1), 1.0, atol=1e-5)
    # what the store keeps: the fp16 vectors of both runtimes, at most a step or two apart
    assert (
        np.abs(a.vectors.astype(np.float16).astype(np.float32) - b.vectors.astype(np.float16).astype(np.float32)).max()
        < FP16_TOLERANCE
    )


def test_export_is_cached_per_version_and_reused(tiny_bundle, cache_dir, both):
    path = Path(cache_dir) / export_key(tiny_bundle.version, 64)
    assert path.exists() and list(Path(cache_dir).iterdir()) == [path]  # no temporary left behind
    before = path.stat()
    again = ImageEncoder.load(tiny_bundle.path, device="cpu", backend="onnx", onnx_cache_dir=cache_dir)
    after = path.stat()  # an export would have renamed a new file over it
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns) and again.run.path == path


def test_auto_means_onnx_on_cpu_and_torch_on_cuda():
    assert pick_backend("auto", "cpu") == "onnx"
    assert pick_backend("auto", "cuda:0") == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        pick_backend("onnx", "cuda")


def test_worker_encodes_with_onnx_as_with_torch(tiny_bundle, cache_dir, both, photo_files, tmp_path):
    """The ingestion path (worker.encode) on an embedded store, once per backend: same vectors."""
    from indexer.config import EmbeddedStoreConfig
    from indexer.embedded_store import EmbeddedStore
    from worker.encode import EncoderCache, encode_products

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo_files["coffee"].read_bytes()[:500] + b"\x00" * 300)
    sources = {"cat": photo_files["chelsea"], "cup": photo_files["coffee"], "broken": broken}
    vectors = {}
    for backend in ("torch", "onnx"):
        store = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path / backend))
        store.register_version(tiny_bundle.version, tiny_bundle.embed_dim, bundle_uri=str(tiny_bundle.path))
        store.activate(tiny_bundle.version)
        for pid, src in sources.items():
            store.put_product(pid, str(src))
        encoders = EncoderCache("cpu", 2, backend=backend, onnx_cache_dir=str(cache_dir))
        report = encode_products(
            store,
            list(sources),
            encoders,
            FetchLimits(file_roots=(str(tmp_path), str(photo_files["chelsea"].parent))),
            decode_threads=2,
        )
        assert sorted(report.encoded) == ["cat", "cup"] and list(report.failed) == ["broken"]
        vectors[backend] = {
            pid: store.get_vector(tiny_bundle.version, store.get_product(pid).image_hash).astype(np.float32)
            for pid in ("cat", "cup")
        }
        store.close()
    for pid in ("cat", "cup"):
        assert np.abs(vectors["torch"][pid] - vectors["onnx"][pid]).max() < FP16_TOLERANCE


@pytest.mark.skipif(not HM_IMAGES.is_dir(), reason="needs the H&M photos in ../shared/data/hm/images")
def test_default_tower_efficientnet_lite0_on_hm_photos(tmp_path):
    """The real default tower (pretrained EfficientNet-Lite0) on real catalogue photos."""
    model = clik.create_model("clik-minilm-lite0").eval()
    bundle = clik.export_bundle(model, clik.create_tokenizer(model), tmp_path / "bundle")
    photos = sorted(HM_IMAGES.glob("*.jpg"))[:24]
    eager = ImageEncoder.load(bundle.path, device="cpu", batch_size=8)
    onnx = ImageEncoder.load(
        bundle.path,
        device="cpu",
        batch_size=8,
        backend="onnx",
        onnx_cache_dir=os.environ.get("CLIK_ONNX_CACHE_DIR", tmp_path / "cache"),
    )
    a, b = eager.encode(photos), onnx.encode(photos)
    assert len(a.indices) == len(b.indices) == 24
    assert np.abs(a.vectors - b.vectors).max() < FP16_TOLERANCE
    assert float((a.vectors * b.vectors).sum(1).min()) > 0.9999
