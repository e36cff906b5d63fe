"""The backbone feature cache: keyed by content, persisted, and honest about bad images."""

import shutil

import numpy as np
import pytest
import torch

import clik
from training.features import FeatureCache, image_features


def test_cache_deduplicates_within_one_call_and_persists(tmp_path):
    cache = FeatureCache(tmp_path / "c", dim=2)
    cache.add(["a", "b", "a"], np.array([[1, 0], [0, 1], [1, 0]], np.float32))
    assert cache.matrix.shape == (2, 2)
    cache.save()
    again = FeatureCache(tmp_path / "c", dim=2)
    np.testing.assert_array_equal(again.get(["b", "a"]), [[0, 1], [1, 0]])


def test_inconsistent_cache_is_refused(tmp_path):
    cache = FeatureCache(tmp_path / "c", dim=2)
    cache.add(["a"], np.ones((1, 2), np.float32))
    cache.save()
    np.save(tmp_path / "c" / "features.npy", np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="inconsistent"):
        FeatureCache(tmp_path / "c", dim=2)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return clik.ClikModel(clik.get_model_config("clik-tiny-test"), load_weights=False).eval()


def test_shared_photos_are_encoded_once_and_bad_ones_reported(tiny_model, shapes_dataset, tmp_path):
    images = sorted((shapes_dataset / "images").glob("*.jpg"))[:3]
    copy = tmp_path / "copy.jpg"
    shutil.copy(images[0], copy)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    broken_copy = tmp_path / "broken2.jpg"
    broken_copy.write_bytes(broken.read_bytes())
    sources = [str(p) for p in images] + [str(copy), str(broken), str(broken_copy), str(tmp_path / "missing.jpg")]
    feats = image_features(tiny_model, sources, tmp_path / "cache", progress=False)
    assert feats.cache.matrix.shape[0] == 3  # the copy shares its original's row
    np.testing.assert_array_equal(feats.of([str(copy)]), feats.of([str(images[0])]))
    assert set(feats.errors) == {str(broken), str(broken_copy), str(tmp_path / "missing.jpg")}
    # A second call computes nothing new and gives the same features.
    again = image_features(tiny_model, sources[:4], tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(again.of(sources[:4]), feats.of(sources[:4]))


def test_two_processes_filling_one_cache_keep_each_others_rows(tmp_path):
    """Runs of one experiment share a cache: a save must not drop what another saved meanwhile."""
    first = FeatureCache(tmp_path / "c", dim=2)
    second = FeatureCache(tmp_path / "c", dim=2)  # opened before the first saved anything
    first.add(["a"], np.array([[1, 0]], np.float32))
    first.save()
    second.add(["b"], np.array([[0, 1]], np.float32))
    second.save()
    merged = FeatureCache(tmp_path / "c", dim=2)
    np.testing.assert_array_equal(merged.get(["a", "b"]), [[1, 0], [0, 1]])
