"""Fixtures: a tiny exported bundle (random weights), image files on disk, stores."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    import torch

    import clik

    torch.manual_seed(0)
    model = clik.ClikModel(clik.get_model_config("clik-tiny-test"), load_weights=False).eval()
    return clik.export_bundle(model, clik.create_tokenizer(model), tmp_path_factory.mktemp("wbundle") / "tiny")


def _bundle(tmp_path_factory, seed: int):
    import torch

    import clik

    torch.manual_seed(seed)
    model = clik.ClikModel(clik.get_model_config("clik-tiny-test"), load_weights=False).eval()
    return clik.export_bundle(model, clik.create_tokenizer(model), tmp_path_factory.mktemp("wbundle") / f"tiny{seed}")


@pytest.fixture(scope="session")
def second_bundle(tmp_path_factory):
    """Another version of the tiny model (other random weights): a re-index target."""
    return _bundle(tmp_path_factory, 1)


@pytest.fixture(scope="session")
def third_bundle(tmp_path_factory):
    return _bundle(tmp_path_factory, 2)


def jpeg_bytes(seed: int, size=(48, 40)) -> bytes:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
        draw.rectangle([int(x0), int(y0), int(x0 + 15), int(y0 + 12)],
                       fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="session")
def image_root(tmp_path_factory) -> Path:
    """Good images, a shared one, and every kind of bad file, under one allowed root."""
    root = tmp_path_factory.mktemp("images")
    for i in range(4):
        (root / f"good{i}.jpg").write_bytes(jpeg_bytes(i))
    (root / "copy_of_good0.jpg").write_bytes(jpeg_bytes(0))  # same bytes, another name
    good = jpeg_bytes(99)
    (root / "corrupt.jpg").write_bytes(good[:300] + b"\x00garbage" * 50)
    (root / "notes.jpg").write_bytes(b"this is a text file, not an image\n" * 10)
    return root


@pytest.fixture(scope="session")
def outside_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("outside") / "secret.jpg"
    path.write_bytes(jpeg_bytes(7))
    return path


@pytest.fixture
def store(tmp_path, tiny_bundle):
    """An embedded store with the tiny bundle registered and active."""
    from indexer.config import EmbeddedStoreConfig
    from indexer.embedded_store import EmbeddedStore

    s = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path / "store"))
    s.register_version(tiny_bundle.version, tiny_bundle.embed_dim, bundle_uri=str(tiny_bundle.path))
    s.activate(tiny_bundle.version)
    yield s
    s.close()

