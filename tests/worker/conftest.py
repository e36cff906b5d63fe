"""Fixtures: a tiny exported bundle (random weights), image files on disk, stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bundles import tiny_bundle as export_tiny_bundle
from tests.support.images import small_jpeg_bytes as jpeg_bytes


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    return export_tiny_bundle(tmp_path_factory.mktemp("wbundle") / "tiny")


@pytest.fixture(scope="session")
def second_bundle(tmp_path_factory):
    """Another version of the tiny model (other random weights): a re-index target."""
    return export_tiny_bundle(tmp_path_factory.mktemp("wbundle") / "tiny1", seed=1)


@pytest.fixture(scope="session")
def third_bundle(tmp_path_factory):
    return export_tiny_bundle(tmp_path_factory.mktemp("wbundle") / "tiny2", seed=2)


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
