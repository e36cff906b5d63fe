"""FAISS catalogue index: exact below the threshold, IVF above it, persisted atomically."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.search_index import SearchIndexConfig, SearchIndex
from indexer.errors import InvalidVector

DIM = 16


def unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ids(n: int, start: int = 0) -> list[str]:
    return [f"p{i}" for i in range(start, start + n)]


def test_exact_search_equals_brute_force(tmp_path):
    x = unit(1000)
    cat = SearchIndex(tmp_path, "v1", DIM)
    cat.add(ids(1000), x)
    q = unit(1, seed=5)[0]
    expect = np.argsort(-(x @ q))[:10]
    got = cat.search(q, 10)
    assert cat.kind == "exact"
    assert [p for p, _ in got] == [f"p{i}" for i in expect]
    assert [s for _, s in got] == pytest.approx((x @ q)[expect].tolist(), abs=1e-5)


def test_growth_past_threshold_switches_to_ivf_and_keeps_finding_items(tmp_path):
    x = unit(6000)
    cat = SearchIndex(tmp_path, "v1", DIM, SearchIndexConfig(exact_threshold=4000, nprobe=64))
    cat.add(ids(3000), x[:3000])
    assert cat.kind == "exact"
    cat.add(ids(3000, 3000), x[3000:])
    assert cat.kind == "ivf" and len(cat) == 6000
    # every probe vector finds itself first (items from before and after the conversion)
    hits = sum(cat.search(x[i], 1)[0][0] == f"p{i}" for i in range(0, 6000, 100))
    assert hits >= 57  # IVF is approximate; 60 probes


def test_replacing_a_product_and_removing(tmp_path):
    x = unit(100)
    cat = SearchIndex(tmp_path, "v1", DIM)
    cat.add(ids(100), x)
    cat.add(["p0"], x[50:51])  # p0 now shows p50's image
    assert len(cat) == 100
    top = {p for p, _ in cat.search(x[50], 2)}
    assert top == {"p0", "p50"}
    assert cat.search(x[0], 1)[0][0] != "p0"
    assert cat.remove(["p0", "absent"]) == 1 and len(cat) == 99


def test_persistence_and_atomic_generations(tmp_path):
    x = unit(500)
    cat = SearchIndex(tmp_path, "model:abc", DIM)
    cat.add(ids(500), x)
    cat.save()
    cat.add(ids(10, 500), unit(10, seed=3))
    cat.save()
    folder = tmp_path / "model_abc"
    assert (folder / "CURRENT").read_text() == "2"
    assert sorted(p.name for p in folder.iterdir()) == ["CURRENT", "ids-2.json", "index-2.faiss"]
    again = SearchIndex(tmp_path, "model:abc", DIM)
    assert len(again) == 510 and again.search(x[7], 1)[0][0] == "p7"
    # the other version's index is separate
    assert len(SearchIndex(tmp_path, "model:def", DIM)) == 0


def test_rebuild_chooses_kind_by_size(tmp_path):
    cat = SearchIndex(tmp_path, "v1", DIM, SearchIndexConfig(exact_threshold=2000))
    x = unit(3000)
    cat.rebuild([(ids(1500), x[:1500]), (ids(1500, 1500), x[1500:])])
    assert cat.kind == "ivf" and len(cat) == 3000
    cat.rebuild([(ids(10), x[:10])])
    assert cat.kind == "exact" and len(cat) == 10
    assert cat.search(x[3], 1)[0][0] == "p3"


def test_rebuild_from_store(tmp_path):
    from indexer.config import EmbeddedStoreConfig
    from indexer.embedded_store import EmbeddedStore

    store = EmbeddedStore(EmbeddedStoreConfig(path=tmp_path / "store"))
    store.register_version("v1", DIM)
    x = unit(50)
    for i in range(50):
        store.put_product(f"p{i}", f"src{i}")
        store.mark_encoded(f"p{i}", f"h{i}")
    store.put_vectors("v1", [(f"h{i}", x[i]) for i in range(50)])
    cat = SearchIndex(tmp_path / "cat", "v1", DIM)
    cat.rebuild(store.iter_product_vectors("v1", batch_size=16))
    assert len(cat) == 50 and cat.search(x[42], 1)[0][0] == "p42"
    store.close()


@pytest.mark.parametrize("bad", [np.ones((2, DIM + 1)), np.full((2, DIM), np.nan), np.zeros((2, DIM))])
def test_bad_vectors_rejected(tmp_path, bad):
    cat = SearchIndex(tmp_path, "v1", DIM)
    with pytest.raises(InvalidVector):
        cat.add(["a", "b"], bad)
    with pytest.raises(InvalidVector):
        cat.search(np.ones(DIM + 1))
    assert len(cat) == 0
