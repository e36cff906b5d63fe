"""The shared suite: both backends must behave identically."""

from __future__ import annotations

import time

import numpy as np
import pytest

from indexer.errors import (
    ExhibitionNotFound,
    InvalidId,
    InvalidInput,
    InvalidVector,
    NoActiveVersion,
    ProductNotFound,
    VectorNotFound,
    VersionConflict,
    VersionInUse,
    VersionNotFound,
)
from indexer.pending import PendingSet
from indexer.records import ProductStatus, VersionState
from indexer.store import VectorStore

DIM = 8


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def filled(store: VectorStore, n: int, version: str = "v1", seed: int = 0) -> np.ndarray:
    """n encoded products p0..p{n-1} with image hashes h0.., exhibition 'e' of all of them."""
    vecs = unit(np.random.default_rng(seed), n)
    if version not in {v.name for v in store.list_versions()}:
        store.register_version(version, DIM, bundle_uri=f"bundles/{version}")
        store.activate(version)
    for i in range(n):
        store.put_product(f"p{i}", f"https://img/{i}.jpg")
        store.mark_encoded(f"p{i}", f"h{i}")
        store.put_vector(version, f"h{i}", vecs[i])
    store.put_exhibition("e", {"name": "summer"}, [f"p{i}" for i in range(n)])
    return vecs


def test_is_the_shared_interface(store):
    assert isinstance(store, VectorStore)


# -- products ---------------------------------------------------------------------------------
def test_product_lifecycle(store):
    p = store.put_product("p1", "https://img/1.jpg")
    assert (p.status, p.image_hash, p.error) == (ProductStatus.PENDING, None, None)
    assert store.mark_encoded("p1", "abc").image_hash == "abc"
    assert store.get_product("p1").status is ProductStatus.ENCODED
    # same source again: nothing changes
    assert store.put_product("p1", "https://img/1.jpg").status is ProductStatus.ENCODED
    # a new image source means a new image: back to pending, old hash forgotten
    p = store.put_product("p1", "https://img/1b.jpg")
    assert (p.status, p.image_hash) == (ProductStatus.PENDING, None)
    f = store.mark_failed("p1", "HTTP 404")
    assert (f.status, f.error) == (ProductStatus.FAILED, "HTTP 404")
    store.delete_product("p1")
    with pytest.raises(ProductNotFound):
        store.get_product("p1")


@pytest.mark.parametrize("op", ["get", "encoded", "failed", "delete"])
def test_unknown_product_raises_not_found(store, op):
    call = {
        "get": lambda: store.get_product("nope"),
        "encoded": lambda: store.mark_encoded("nope", "h"),
        "failed": lambda: store.mark_failed("nope", "x"),
        "delete": lambda: store.delete_product("nope"),
    }
    with pytest.raises(ProductNotFound):
        call[op]()


@pytest.mark.parametrize("bad", ["", "a\nb", "x" * 600, None])
def test_bad_ids_rejected(store, bad):
    with pytest.raises(InvalidId):
        store.put_product(bad, "src")
    with pytest.raises(ValueError):  # InvalidId is a ValueError too
        store.put_exhibition("e", {}, ["ok", bad])


# -- exhibitions ------------------------------------------------------------------------------
def test_exhibition_roundtrip_and_dedup(store):
    e = store.put_exhibition("e1", {"name": "summer", "cat1": "shoes"}, ["a", "b", "a", "c"])
    assert e.product_ids == ("a", "b", "c")
    got = store.get_exhibition("e1")
    assert got.topic == {"name": "summer", "cat1": "shoes"}
    assert got.product_ids == ("a", "b", "c")
    assert got.updated_at == pytest.approx(e.updated_at)
    store.put_exhibition("e1", {"name": "winter"}, ["c"])
    assert store.get_exhibition("e1").product_ids == ("c",)
    store.delete_exhibition("e1")
    with pytest.raises(ExhibitionNotFound):
        store.get_exhibition("e1")
    with pytest.raises(ExhibitionNotFound):
        store.delete_exhibition("e1")


def test_failed_exhibition_update_keeps_previous_state(store):
    store.put_exhibition("e1", {"name": "a"}, ["p1", "p2"])
    with pytest.raises(InvalidId):
        store.put_exhibition("e1", {"name": "b"}, ["p3", "bad\nid"])
    assert store.get_exhibition("e1").product_ids == ("p1", "p2")


# -- versions ---------------------------------------------------------------------------------
def test_version_registry(store):
    assert store.active_version() is None
    v1 = store.register_version("v1", DIM, "bundles/v1")
    assert (v1.state, v1.active, v1.dim, v1.bundle_uri) == (VersionState.FILLING, False, DIM, "bundles/v1")
    assert store.register_version("v1", DIM).id == v1.id  # idempotent
    with pytest.raises(VersionConflict):
        store.register_version("v1", DIM + 1)
    store.register_version("v2", 4)
    assert store.activate("v1").active
    assert store.active_version().name == "v1"
    assert store.set_version_state("v2", VersionState.READY).state is VersionState.READY
    assert [(v.name, v.active) for v in store.list_versions()] == [("v1", True), ("v2", False)]
    with pytest.raises(VersionNotFound):
        store.get_version("v9")
    with pytest.raises(VersionNotFound):
        store.activate("v9")


def test_unknown_version_is_both_not_found_and_value_error(store):
    with pytest.raises(ValueError):
        store.put_vector("nope", "h", np.ones(DIM))


# -- vectors ----------------------------------------------------------------------------------
def test_vectors_are_normalised_fp16(store):
    store.register_version("v1", DIM)
    store.put_vector("v1", "h", np.arange(1, DIM + 1, dtype=np.float64))
    got = store.get_vector("v1", "h")
    assert got.dtype == np.float16 and got.shape == (DIM,)
    assert np.linalg.norm(got.astype(np.float32)) == pytest.approx(1.0, abs=2e-3)
    assert store.has_vector("v1", "h") and not store.has_vector("v1", "other")
    with pytest.raises(VectorNotFound):
        store.get_vector("v1", "other")


@pytest.mark.parametrize(
    "bad",
    [
        np.ones(DIM + 1),
        np.ones((2, DIM)),
        np.full(DIM, np.nan),
        np.r_[np.ones(DIM - 1), np.inf],
        np.zeros(DIM),
        ["a"] * DIM,
    ],
)
def test_bad_vectors_rejected(store, bad):
    store.register_version("v1", DIM)
    with pytest.raises(InvalidVector):
        store.put_vector("v1", "h", bad)
    assert not store.has_vector("v1", "h")


def test_batch_with_one_bad_vector_writes_nothing(store):
    store.register_version("v1", DIM)
    with pytest.raises(InvalidVector):
        store.put_vectors("v1", [("h1", np.ones(DIM)), ("h2", np.full(DIM, np.nan))])
    assert not store.has_vector("v1", "h1")


def test_shared_image_stored_once_and_ranked_for_every_product(store):
    store.register_version("v1", DIM)
    store.activate("v1")
    for pid in ("a", "b"):
        store.put_product(pid, "https://img/same.jpg")
        store.mark_encoded(pid, "same-hash")
    assert store.missing_vectors("v1") == [("same-hash", "https://img/same.jpg")]
    store.put_vector("v1", "same-hash", np.ones(DIM))
    assert store.missing_vectors("v1") == []
    store.put_exhibition("e", {}, ["a", "b"])
    r = store.rank("e", np.ones(DIM), k=5)
    assert sorted(i.product_id for i in r.items) == ["a", "b"]
    assert all(i.score == pytest.approx(1.0, abs=2e-3) for i in r.items)
    batches = list(store.iter_product_vectors("v1"))
    assert sorted(p for ids, _ in batches for p in ids) == ["a", "b"]


# -- ranking ----------------------------------------------------------------------------------
def test_rank_matches_brute_force(store):
    vecs = filled(store, 300)
    q = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    expect = vecs.astype(np.float16).astype(np.float32) @ (q / np.linalg.norm(q))
    order = np.argsort(-expect, kind="stable")
    r = store.rank("e", q, k=10)
    assert r.model_version == "v1" and r.total_scored == 300
    assert [i.product_id for i in r.items] == [f"p{j}" for j in order[:10]]
    assert [i.rank for i in r.items] == list(range(1, 11))
    assert np.allclose([i.score for i in r.items], expect[order[:10]], atol=1e-3)
    # pages put end to end are the full ranking
    pages = [store.rank_page("e", q, offset=o, limit=70).items for o in range(0, 300, 70)]
    flat = [i.product_id for page in pages for i in page]
    assert flat == [f"p{j}" for j in order]
    assert store.rank_page("e", q, offset=400, limit=10).items == []


def test_rank_reports_pending_failed_unknown(store):
    filled(store, 3)
    store.put_product("p3", "https://img/3.jpg")  # pending: no image yet
    store.put_product("p4", "https://img/4.jpg")
    store.mark_failed("p4", "timeout")
    store.put_product("p5", "https://img/5.jpg")
    store.mark_encoded("p5", "h5")  # encoded but no vector for v1 yet: still pending
    store.put_exhibition("e", {}, ["p0", "p1", "p2", "p3", "p4", "p5", "ghost"])
    r = store.rank("e", np.ones(DIM), k=10)
    assert r.total_scored == 3 and len(r.items) == 3
    assert (r.pending, r.failed, r.unknown) == (["p3", "p5"], ["p4"], ["ghost"])


def test_bad_rank_requests(store):
    filled(store, 3)
    with pytest.raises(InvalidVector):
        store.rank("e", np.ones(DIM + 1))
    with pytest.raises(InvalidVector):
        store.rank("e", np.full(DIM, np.nan))
    with pytest.raises(InvalidInput):
        store.rank("e", np.ones(DIM), k=0)
    with pytest.raises(InvalidInput):
        store.rank_page("e", np.ones(DIM), offset=-1)
    with pytest.raises(ExhibitionNotFound):
        store.rank("nope", np.ones(DIM))
    with pytest.raises(VersionNotFound):
        store.rank("e", np.ones(DIM), version="v9")


def test_rank_without_active_version(store):
    store.put_exhibition("e", {}, ["p"])
    with pytest.raises(NoActiveVersion):
        store.rank("e", np.ones(DIM))


def test_block_follows_changes_seen_by_another_process(store_factory):
    """A warm block in one process is rebuilt when another process changes what it packs."""
    writer, reader = store_factory.open(), store_factory.open()
    vecs = filled(writer, 5)
    q = vecs[0]
    assert reader.rank("e", q, k=1).items[0].product_id == "p0"
    # a new product's vector arrives: pending -> scored
    writer.put_product("p9", "https://img/9.jpg")
    writer.put_exhibition("e", {}, [f"p{i}" for i in range(5)] + ["p9"])
    assert reader.rank("e", q).pending == ["p9"]
    writer.mark_encoded("p9", "h9")
    assert reader.rank("e", q).pending == ["p9"]
    writer.put_vector("v1", "h9", q * 2)
    r = reader.rank("e", q, k=2)
    assert r.pending == [] and {i.product_id for i in r.items} == {"p0", "p9"}
    # a product fails, then its image changes, then it leaves the exhibition
    writer.mark_failed("p0", "gone")
    assert reader.rank("e", q).failed == ["p0"]
    writer.put_product("p0", "https://img/0-new.jpg")
    assert "p0" in reader.rank("e", q).pending
    writer.put_exhibition("e", {}, ["p1", "p2"])
    r = reader.rank("e", q, k=10)
    assert {i.product_id for i in r.items} == {"p1", "p2"} and r.pending == []
    writer.delete_product("p1")
    assert reader.rank("e", q).unknown == ["p1"]


# -- versions in rankings -----------------------------------------------------------------------
def test_versions_never_mix_and_switch_atomically(store):
    old = filled(store, 4, "v1")
    store.register_version("v2", DIM, "bundles/v2")
    new = unit(np.random.default_rng(7), 4)
    store.put_vector("v2", "h0", new[0])  # v2 is filling: only one image so far
    store.put_vector("v2", "h1", new[1])
    r1 = store.rank("e", old[2], k=4)
    assert r1.model_version == "v1" and r1.total_scored == 4  # default stays on the active one
    assert r1.items[0].product_id == "p2"
    r2 = store.rank("e", new[1], k=4, version="v2")
    assert r2.model_version == "v2" and r2.total_scored == 2
    assert r2.pending == ["p2", "p3"]
    assert r2.items[0].product_id == "p1" and r2.items[0].score == pytest.approx(1.0, abs=2e-3)
    store.put_vector("v2", "h2", new[2])
    store.put_vector("v2", "h3", new[3])
    store.activate("v2")
    r = store.rank("e", new[3], k=1)
    assert r.model_version == "v2" and r.total_scored == 4 and r.items[0].product_id == "p3"
    with pytest.raises(VersionInUse):
        store.drop_version("v2")
    store.drop_version("v1")
    with pytest.raises(VersionNotFound):
        store.get_vector("v1", "h0")
    with pytest.raises(VersionNotFound):
        store.rank("e", old[0], version="v1")
    # a re-registered name starts empty: old vectors are gone, not resurrected
    store.register_version("v1", DIM)
    assert not store.has_vector("v1", "h0")
    assert store.rank("e", old[0], version="v1").total_scored == 0


# -- topic cache ------------------------------------------------------------------------------
def test_topic_embedding_cache(store):
    store.register_version("v1", DIM)
    key = "summer sale|2024-06-01|shoes|sandals"
    assert store.get_topic_embedding("v1", key) is None
    emb = np.linspace(-1, 1, 384, dtype=np.float32)
    store.put_topic_embedding("v1", key, emb)
    np.testing.assert_array_equal(store.get_topic_embedding("v1", key), emb)
    with pytest.raises(InvalidVector):
        store.put_topic_embedding("v1", key, [np.nan, 1.0])
    with pytest.raises(VersionNotFound):
        store.get_topic_embedding("v9", key)
    store.register_version("v2", DIM)
    store.activate("v2")
    store.drop_version("v1")
    store.register_version("v1", DIM)
    assert store.get_topic_embedding("v1", key) is None


def test_import_products_in_bulk(store):
    store.register_version("v1", DIM)
    store.activate("v1")
    store.put_exhibition("e", {}, ["a", "b", "c"])
    store.import_products([("a", "src-a", "ha"), ("b", "src-b", None), ("c", "src-c", "ha")])
    assert store.get_product("a").image_hash == "ha"
    assert store.get_product("b").status is ProductStatus.PENDING
    store.put_vector("v1", "ha", np.ones(DIM))
    r = store.rank("e", np.ones(DIM))
    assert sorted(i.product_id for i in r.items) == ["a", "c"] and r.pending == ["b"]
    with pytest.raises(InvalidId):
        store.import_products([("d", "src", None), ("", "src", None)])


# -- operator-facing additions: product attributes, exhibition listing --------------------------
def test_product_attributes_are_kept_replaced_and_deleted(store):
    store.register_version("v1", DIM)
    store.activate("v1")
    store.put_exhibition("e", {}, ["p1"])
    p = store.put_product("p1", "src-1", {"title": "Red dress", "price": 39.9, "tags": ["a", "b"]})
    assert p.attrs == {"title": "Red dress", "price": 39.9, "tags": ["a", "b"]}
    store.mark_encoded("p1", "h1")
    store.put_vector("v1", "h1", np.ones(DIM))
    before = store.rank("e", np.ones(DIM))
    _, block = store.scoring_block("e")
    # new attributes, same image: still encoded, same ranking, but the exhibition's block is
    # rebuilt (business rules read the attributes of its products)
    p = store.put_product("p1", "src-1", {"title": "Dark red dress"})
    assert p.status is ProductStatus.ENCODED and p.attrs == {"title": "Dark red dress"}
    assert store.rank("e", np.ones(DIM)).items == before.items
    assert store.scoring_block("e")[1] is not block
    assert store.get_attrs(["p1", "nope"]) == {"p1": {"title": "Dark red dress"}}
    _, block = store.scoring_block("e")
    store.put_product("p1", "src-1", {"title": "Dark red dress"})  # unchanged: the block stays
    assert store.scoring_block("e")[1] is block
    # attrs=None keeps them, also when the image changes
    p = store.put_product("p1", "src-2")
    assert p.status is ProductStatus.PENDING and p.attrs == {"title": "Dark red dress"}
    assert store.put_product("p2", "src").attrs == {}
    store.import_products([("p1", "src-3", None)])
    assert store.get_product("p1").attrs == {"title": "Dark red dress"}
    store.delete_product("p1")
    assert store.put_product("p1", "src-1").attrs == {}  # a deleted product forgets them


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": object()}, {1: "a"}, ["a"], {"x": "y" * 70_000}])
def test_bad_product_attributes_rejected_and_nothing_written(store, bad):
    with pytest.raises(InvalidInput):
        store.put_product("p1", "src", bad)
    with pytest.raises(ProductNotFound):
        store.get_product("p1")


def test_list_exhibitions_pages_by_id(store):
    assert store.list_exhibitions().total == 0
    for eid in ("b", "a", "d", "c"):
        store.put_exhibition(eid, {"name": f"topic {eid}"}, [f"p-{eid}"])
    store.put_exhibition("a", {"name": "topic a2"}, ["x", "y"])  # replaced, listed once
    page = store.list_exhibitions(offset=0, limit=3)
    assert page.total == 4
    assert [e.exhibition_id for e in page.items] == ["a", "b", "c"]
    assert page.items[0].topic == {"name": "topic a2"} and page.items[0].product_ids == ("x", "y")
    assert [e.exhibition_id for e in store.list_exhibitions(offset=3, limit=3).items] == ["d"]
    assert store.list_exhibitions(offset=10).items == []
    store.delete_exhibition("b")
    page = store.list_exhibitions()
    assert page.total == 3 and [e.exhibition_id for e in page.items] == ["a", "c", "d"]
    with pytest.raises(InvalidInput):
        store.list_exhibitions(offset=-1)
    with pytest.raises(InvalidInput):
        store.list_exhibitions(limit=0)


def test_exhibition_topic_alone(store):
    store.put_exhibition("e", {"name": "summer"}, [f"p{i}" for i in range(5)])
    assert store.get_exhibition_topic("e") == {"name": "summer"}
    with pytest.raises(ExhibitionNotFound):
        store.get_exhibition_topic("nope")


def test_catalogue_generation_moves_with_products_and_vectors(store):
    store.register_version("v1", DIM)
    seen = [store.catalogue_generation()]

    def moved() -> bool:
        now = store.catalogue_generation()
        changed = now != seen[-1]
        seen.append(now)
        return changed

    store.put_product("p1", "src")
    assert moved()
    store.put_product("p1", "src", {"title": "x"})  # attributes only: the catalogue is the same
    assert not moved()
    store.mark_encoded("p1", "h1")
    assert moved()
    store.put_vector("v1", "h1", np.ones(DIM))
    assert moved()
    store.put_vectors("v1", [("h2", np.ones(DIM))])
    assert moved()
    store.put_exhibition("e", {}, ["p1"])  # exhibitions are not the catalogue
    assert not moved()
    store.mark_failed("p1", "gone")
    assert moved()
    store.delete_product("p1")
    assert moved()


def test_catalogue_changes_name_what_changed_since_a_generation(store):
    store.register_version("v1", DIM)
    for i in range(3):
        store.put_product(f"p{i}", f"src{i}")
        store.mark_encoded(f"p{i}", "shared" if i < 2 else "h2")
    start = store.catalogue_generation()
    assert store.catalogue_changes(start).product_ids == ()
    store.put_vector("v1", "shared", np.ones(DIM))  # the image of p0 and p1
    changes = store.catalogue_changes(start)
    assert sorted(changes.product_ids) == ["p0", "p1"]
    assert changes.generation == store.catalogue_generation()
    mid = changes.generation
    store.delete_product("p0")
    store.put_product("p3", "src3")
    assert sorted(store.catalogue_changes(mid).product_ids) == ["p0", "p3"]
    assert sorted(store.catalogue_changes(start).product_ids) == ["p0", "p1", "p3"]  # one entry each
    assert store.catalogue_changes(store.catalogue_generation() + 5) is None  # not this store's


def test_catalogue_changes_of_one_large_bulk_write_are_all_logged(store):
    store.register_version("v1", DIM)
    n = 9000  # more than one Lua unpack() takes at once
    store.import_products([(f"p{i}", f"s{i}", f"h{i}") for i in range(n)])
    start = store.catalogue_generation()
    store.put_vectors("v1", [(f"h{i}", np.ones(DIM)) for i in range(n)])
    assert len(store.catalogue_changes(start).product_ids) == n


def test_product_vectors_are_those_of_encoded_products_with_a_vector(store):
    vecs = filled(store, 4)
    store.put_product("p9", "pending-src")  # no image yet
    store.mark_failed("p3", "gone")
    ids, mat = store.product_vectors("v1", ["p2", "p0", "p3", "p9", "nope", "p0"])
    got = dict(zip(ids, mat.astype(np.float32)))
    assert sorted(got) == ["p0", "p2"] and mat.dtype == np.float16
    np.testing.assert_allclose(got["p2"], vecs[2], atol=2e-3)
    assert store.product_vectors("v1", [])[0] == []
    with pytest.raises(VersionNotFound):
        store.product_vectors("nope", ["p0"])


def test_coverage_counts_products_with_a_vector_per_version(store):
    filled(store, 6)  # p0..p5 encoded with vectors in v1
    store.put_product("p-pending", "https://img/pending.jpg")
    store.put_product("p-failed", "https://img/failed.jpg")
    store.mark_failed("p-failed", "HTTP 404")
    store.register_version("v2", DIM)
    rng = np.random.default_rng(1)
    store.put_vectors("v2", [(f"h{i}", unit(rng, 1)[0]) for i in range(3)])  # half re-encoded
    store.put_product("p-shared", "https://img/shared.jpg")
    store.mark_encoded("p-shared", "h0")  # one image, two products: both covered

    cov = store.coverage(["v1", "v2", "never-registered"])
    assert (cov.products, cov.encoded, cov.failed) == (9, 7, 1)
    assert cov.covered == {"v1": 7, "v2": 4, "never-registered": 0}
    assert cov.share("v1") == pytest.approx(7 / 9) and cov.share("v2") == pytest.approx(4 / 9)
    assert cov.rankable_share("v1") == pytest.approx(7 / 8)  # the failed product is not the version's fault
    assert store.coverage([]).covered == {}


def test_coverage_stays_exact_through_every_kind_of_change(store):
    """Random product, vector and version changes: coverage() equals a count made from scratch
    (the Redis backend keeps counters updated by its scripts; they must never drift)."""
    rng = np.random.default_rng(7)
    versions = ["a", "b"]
    for name in versions:
        store.register_version(name, DIM)
    store.activate("a")

    def recount() -> tuple[int, int, int, dict[str, int]]:
        products = encoded = failed = 0
        covered = dict.fromkeys(versions, 0)
        for i in range(12):
            try:
                p = store.get_product(f"p{i}")
            except ProductNotFound:
                continue
            products += 1
            failed += p.status is ProductStatus.FAILED
            if p.status is ProductStatus.ENCODED:
                encoded += 1
                for name in versions:
                    if name in {v.name for v in store.list_versions()}:
                        covered[name] += store.has_vector(name, p.image_hash)
        return products, encoded, failed, covered

    for step in range(300):
        pid, h = f"p{rng.integers(12)}", f"h{rng.integers(6)}"  # images shared by several products
        op = rng.integers(7)
        try:
            if op == 0:
                store.put_product(pid, f"https://img/{rng.integers(3)}/{pid}.jpg")
            elif op == 1:
                store.mark_encoded(pid, h)
            elif op == 2:
                store.mark_failed(pid, "HTTP 404")
            elif op == 3:
                store.delete_product(pid)
            elif op == 4:
                store.put_vectors(versions[rng.integers(2)], [(h, unit(rng, 1)[0])])
            elif op == 5 and step % 40 == 0:
                store.drop_version("b")
                store.register_version("b", DIM)
        except ProductNotFound:
            pass
        if step % 25 == 0 or step == 299:
            cov = store.coverage(versions)
            assert (cov.products, cov.encoded, cov.failed, cov.covered) == recount(), step


# -- what a cached ranking answer needs first, and the answers themselves ----------------------------
def test_block_stamp_is_the_stamp_of_the_block_with_the_records_asked_for(store_factory):
    store, other = store_factory.open(), store_factory.open()
    filled(store, 4)
    store.put_job("merch:overrides:e", {"pinned": {"p1": 1}})
    name, stamp, (record, missing) = other.block_stamp("e", ["merch:overrides:e", "nothing:here"])
    assert (name, record, missing) == ("v1", {"pinned": {"p1": 1}}, None)
    assert other.stamped_block("e")[1] == stamp
    assert other.block_stamp("e")[2] == []
    for change in (
        lambda: store.put_vector("v1", "h1", np.ones(DIM)),
        lambda: store.put_exhibition("e", {"name": "winter"}, ["p0", "p1"]),
        lambda: store.put_product("p0", "https://img/0.jpg", {"sold_out": True}),
    ):
        change()
        now = other.block_stamp("e")[1]
        assert now != stamp and now == store.stamped_block("e")[1]
        stamp = now
    with pytest.raises(ExhibitionNotFound):
        other.block_stamp("nope")


def test_block_stamp_needs_an_active_version(store):
    store.put_exhibition("e", {"name": "x"}, [])
    with pytest.raises(NoActiveVersion):
        store.block_stamp("e")


def test_prepare_block_stores_the_block_at_its_stamp_for_any_version(store_factory):
    store, reader = store_factory.open(), store_factory.open()
    filled(store, 5)
    store.register_version("v2", DIM)
    store.put_vectors("v2", [(f"h{i}", np.eye(DIM)[i]) for i in range(3)])
    stamp = store.prepare_block("e", "v2")  # not the active version: ahead of its switch
    assert store.prepare_block("e", "v2") == stamp
    name, stamp_read, block = reader.stamped_block("e", "v2")
    assert (name, stamp_read, len(block.product_ids), len(block.pending)) == ("v2", stamp, 3, 2)
    with pytest.raises(ExhibitionNotFound):
        store.prepare_block("nope", "v2")


def test_answers_are_shared_by_key(store_factory):
    store, other = store_factory.open(), store_factory.open()
    assert store.get_answer("representative:abc") is None
    store.put_answer("representative:abc", b'{"items": []}', ttl_s=60)
    assert store.get_answer("representative:abc") == b'{"items": []}'
    if store_factory.kind == "redis":  # the embedded store is one process: its memory is shared
        assert other.get_answer("representative:abc") == b'{"items": []}'
    store.put_answer("representative:short", b"x", ttl_s=1)
    import time

    time.sleep(1.2)
    assert store.get_answer("representative:short") is None


# -- the workers' pending set (indexer/pending.py) ------------------------------------------------
# Backends that keep none, and why: their products are encoded as their events arrive.
WITHOUT_PENDING_SET = {"EmbeddedStore": "one process on one machine: events are encoded inline"}


def test_pending_set_is_shared_by_every_process_on_the_store(store_factory):
    store = store_factory.open()
    pending = store.pending_set(lease_s=0.4)
    if type(store).__name__ in WITHOUT_PENDING_SET:
        assert pending is None
        return
    assert isinstance(pending, PendingSet) and pending.lease_s == 0.4
    other = store_factory.open().pending_set(lease_s=0.4)  # a second worker process
    assert other is not None
    assert len(other) == 0 and other.next_due() is None
    pending.add(["a", "b", "a"])
    assert len(other) == 2 and other.next_due() == 0
    claimed = pending.claim("drain-1", 10)
    assert set(claimed) == {"a", "b"} and other.waiting(["a", "b", "c"]) == claimed
    assert other.claim("drain-2", 10) == {}  # leased to drain-1
    assert 0 < other.next_due() <= 0.4
    assert pending.renew("drain-1", ["a", "b"]) == 2 and other.renew("drain-2", ["a"]) == 0
    pending.add(["b"])  # a new event while drain-1 works: b keeps its entry after completion
    assert pending.complete(claimed) == 1
    assert set(other.waiting(["a", "b"])) == {"b"}
    assert set(other.claim("drain-2", 10)) == {"b"}


def test_pending_set_postpones_releases_and_counts(store_factory):
    store = store_factory.open()
    pending = store.pending_set()
    if type(store).__name__ in WITHOUT_PENDING_SET:
        assert pending is None
        return
    assert pending is not None
    pending.add(["a", "b"])
    batch = pending.claim("drain-1", 10)
    assert pending.count_failure("a") == 1 and pending.count_failure("a") == 2
    pending.postpone("a", 60.0)
    pending.release(["b"])
    assert pending.claim("drain-2", 10) == {"b": batch["b"]}  # a waits for its delay
    assert 14 < pending.next_due() <= 15  # b's lease (15 s) runs out first
    assert pending.complete({"b": batch["b"]}) == 1
    assert 59 < pending.next_due() <= 60  # then only a waits, for its delay
    pending.count_batch(images=2, vectors=1)
    pending.count_batch(images=1, vectors=1)
    assert pending.stats() == {"batches": 2, "images": 3, "vectors": 2}
    assert pending.claim_schedule(ttl_s=60) is True and pending.claim_schedule(ttl_s=60) is False
    pending.drain_started()
    assert pending.claim_schedule(ttl_s=60) is True
    assert len(pending) == 1


def test_a_claim_goes_to_the_first_caller_until_it_expires(store_factory):
    import time

    store, other = store_factory.open(), store_factory.open()
    assert store.claim("render:e:abc", ttl_s=1)
    assert not store.claim("render:e:abc", ttl_s=1)
    if store_factory.kind == "redis":  # another process of the same store
        assert not other.claim("render:e:abc", ttl_s=1)
    assert store.claim("render:e:other", ttl_s=1)
    time.sleep(1.2)
    assert store.claim("render:e:abc", ttl_s=1)


def test_precompute_notices_reach_the_listeners_there_when_they_are_sent(store_factory):
    import queue

    store = store_factory.open()
    sender = store_factory.open() if store_factory.kind == "redis" else store
    heard: queue.Queue = queue.Queue()
    stop = store.on_precomputed(lambda version, ids: heard.put((version, ids)))
    try:
        deadline = time.monotonic() + 10
        while heard.empty() and time.monotonic() < deadline:  # the subscription takes a moment
            sender.announce_precomputed("v1", ["warmup"])
            time.sleep(0.05)
        while not heard.empty():
            heard.get()
        sender.announce_precomputed("v1", ["e1", "e:2"])
        sender.announce_precomputed("v1", [])  # nothing precomputed: nothing said
        assert heard.get(timeout=10) == ("v1", ["e1", "e:2"])
    finally:
        stop()
    time.sleep(0.1)
    while not heard.empty():  # warm-ups still in flight
        heard.get()
    sender.announce_precomputed("v1", ["after"])
    time.sleep(0.5)
    assert heard.empty()


def test_async_reads_read_what_the_blocking_ones_do(store_factory):
    import asyncio

    store = store_factory.open()
    filled(store, 3)
    store.put_job("merch:e", {"x": 1})
    store.put_answer("representative:abc", b"{}", ttl_s=60)

    async def read():
        reads = store.async_reads()
        try:
            stamp = await reads.block_stamp("e", ["merch:e", "nope"])
            answers = (await reads.get_answer("representative:abc"), await reads.get_answer("nope"))
            with pytest.raises(ExhibitionNotFound):
                await reads.block_stamp("missing")
            return stamp, answers
        finally:
            await reads.aclose()

    stamp, answers = asyncio.run(read())
    assert stamp == store.block_stamp("e", ["merch:e", "nope"]) and stamp[2] == [{"x": 1}, None]
    assert answers == (b"{}", None)


def test_exhibitions_of_products_follow_their_member_lists(store):
    filled(store, 4)
    store.put_exhibition("f", {"name": "winter"}, ["p1", "p3"])
    assert store.exhibitions_of(["p1"]) == ["e", "f"]
    assert store.exhibitions_of(["p0", "p0", "nope"]) == ["e"]
    assert store.exhibitions_of([]) == []
    store.put_exhibition("f", {"name": "winter"}, ["p2"])  # replaced: p1 and p3 left it
    assert store.exhibitions_of(["p3"]) == ["e"] and store.exhibitions_of(["p2"]) == ["e", "f"]
    store.delete_exhibition("e")
    assert store.exhibitions_of(["p0", "p1", "p2", "p3"]) == ["f"]
