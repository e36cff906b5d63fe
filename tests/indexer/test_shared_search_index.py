"""The catalogue index shared by a host's processes: built once, caught up with only the products
that changed, mapped by the processes that did not update it (both store backends)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from indexer.config import RedisStoreConfig
from indexer.redis_store import RedisStore
from indexer.shared_search_index import SharedSearchIndex
from indexer.search_index import index_folder

DIM = 8
ROOT = Path(__file__).resolve().parents[2]


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def catalogue(store, n: int = 50) -> np.ndarray:
    vecs = unit(np.random.default_rng(0), n)
    store.register_version("v1", DIM)
    store.activate("v1")
    store.import_products([(f"p{i}", f"src{i}", f"h{i}") for i in range(n)])
    store.put_vectors("v1", [(f"h{i}", vecs[i]) for i in range(n)])
    return vecs


def top(index, query: np.ndarray, k: int = 1) -> list[str]:
    return [pid for pid, _ in index.search(query, k)]


def test_a_second_process_uses_the_saved_index_instead_of_building_its_own(store, tmp_path):
    vecs = catalogue(store)
    version = store.get_version("v1")
    first, second = (SharedSearchIndex(store, tmp_path, version) for _ in range(2))
    first.refresh(store.catalogue_generation(), wait=True)
    index = second.refresh(store.catalogue_generation(), wait=True)
    assert (first.counts.rebuilds, second.counts.rebuilds, second.counts.updates) == (1, 0, 0)
    assert top(index, vecs[7]) == ["p7"] and len(index) == 50


def test_changes_are_applied_product_by_product_not_by_rebuilding(store, tmp_path):
    vecs = catalogue(store)
    shared = SharedSearchIndex(store, tmp_path, store.get_version("v1"))
    shared.refresh(store.catalogue_generation(), wait=True)
    fresh = unit(np.random.default_rng(1), 2)
    store.put_vector("v1", "h3", fresh[0])  # p3's image has a new vector
    store.delete_product("p4")
    store.import_products([("new", "src-new", "h-new")])
    store.put_vector("v1", "h-new", fresh[1])
    store.put_product("p5", "src5-changed")  # a new image, not encoded yet: out of the index
    index = shared.refresh(store.catalogue_generation(), wait=True)
    assert (shared.counts.rebuilds, shared.counts.updates, shared.counts.products_applied) == (1, 1, 4)
    assert len(index) == 49
    assert top(index, fresh[0]) == ["p3"] and top(index, fresh[1]) == ["new"]
    assert not {"p4", "p5"} & set(top(index, vecs[4], 50))
    # a second look with nothing changed does no work
    shared.refresh(store.catalogue_generation(), wait=True)
    assert shared.counts.updates == 1


def test_while_another_process_updates_the_saved_generation_is_searched(store, tmp_path):
    vecs = catalogue(store)
    version = store.get_version("v1")
    writer = SharedSearchIndex(store, tmp_path, version)
    writer.refresh(store.catalogue_generation(), wait=True)
    store.delete_product("p0")
    reader = SharedSearchIndex(store, tmp_path, version)
    with open(index_folder(tmp_path, writer.key) / ".lock", "a+") as held:  # another process mid-update
        fcntl.flock(held, fcntl.LOCK_EX)
        index = reader.refresh(store.catalogue_generation(), wait=False)
    assert index is not None and index.read_only and reader.counts.maps == 1
    assert top(index, vecs[0]) == ["p0"]  # the saved generation, one update behind
    index = reader.refresh(store.catalogue_generation(), wait=False)  # lock free: it catches up itself
    assert top(index, vecs[0]) != ["p0"] and reader.counts.updates == 1


def test_a_change_log_that_no_longer_reaches_back_means_one_rebuild(redis_store, tmp_path):
    capped = RedisStore(RedisStoreConfig(url=redis_store.config.url, prefix=redis_store.prefix, catalogue_log_cap=5))
    vecs = catalogue(capped, 20)
    shared = SharedSearchIndex(capped, tmp_path, capped.get_version("v1"))
    shared.refresh(capped.catalogue_generation(), wait=True)
    for i in range(10):  # more changes than the log keeps
        capped.put_vector("v1", f"h{i}", -vecs[i])
    index = shared.refresh(capped.catalogue_generation(), wait=True)
    assert (shared.counts.rebuilds, shared.counts.updates) == (2, 0)
    assert top(index, -vecs[9]) == ["p9"]
    capped.close()


CHILD = """
import json, sys
from pathlib import Path
from indexer.config import RedisStoreConfig
from indexer.redis_store import RedisStore
from indexer.shared_search_index import SharedSearchIndex
store = RedisStore(RedisStoreConfig(url=sys.argv[1], prefix=sys.argv[2]))
sys.stdin.readline()  # start together
shared = SharedSearchIndex(store, Path(sys.argv[3]), store.get_version("v1"))
index = shared.refresh(store.catalogue_generation(), wait=True)
print(json.dumps({"rebuilds": shared.counts.rebuilds, "size": len(index)}))
"""


def test_processes_starting_together_build_the_index_once(redis_store, tmp_path):
    catalogue(redis_store, 2000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, redis_store.config.url, redis_store.prefix, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    outs = [json.loads(p.communicate("go\n", timeout=120)[0]) for p in procs]
    assert sorted(o["rebuilds"] for o in outs) == [0, 0, 1]
    assert {o["size"] for o in outs} == {2000}
