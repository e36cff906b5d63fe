"""Keeping the catalogue search index current: rebuilt per process (before) against one shared
index caught up with the changed products only (indexer.shared_search_index), side by side.

    python benchmarks/catalogue_search.py [--products 100000] [--changes 100] [--processes 2]
                                          [--json benchmarks/results/catalogue_search.json]

A private redis-server holds `--products` encoded products with `--dim` vectors. Then `--changes`
products change (new vectors) and the index is brought up to date:
  before: every API process rebuilds its own index from the store (iter_product_vectors, then
          SearchIndex.rebuild): the time of one rebuild, times `--processes`;
  now:    one process applies the changes (store.catalogue_changes, product_vectors, add/remove,
          save a new generation), every other process maps the saved files (read-only mmap).
Each figure is the median of `--repeats` rounds; the ratio is measured within this run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.config import RedisStoreConfig  # noqa: E402
from indexer.redis_store import RedisStore  # noqa: E402
from indexer.search_index import SearchIndex  # noqa: E402
from indexer.shared_search_index import SharedSearchIndex  # noqa: E402
from tests.support.redis_servers import redis_server  # noqa: E402


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fill(store: RedisStore, n: int, dim: int) -> None:
    store.register_version("v1", dim)
    store.activate("v1")
    rng = np.random.default_rng(0)
    for start in range(0, n, 10_000):
        ids = range(start, min(n, start + 10_000))
        store.import_products([(f"p{i}", f"src{i}", f"h{i}") for i in ids])
        store.put_vectors("v1", list(zip((f"h{i}" for i in ids), unit(rng, len(ids), dim))))


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--changes", type=int, default=100, help="products changed between two looks")
    ap.add_argument("--processes", type=int, default=2, help="API processes on the host (uvicorn workers)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/catalogue_search.json"))
    args = ap.parse_args()

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp) / "redis") as url:
        store = RedisStore(RedisStoreConfig(url=url, prefix="bench:"))
        fill(store, args.products, args.dim)
        version = store.get_version("v1")
        folder = Path(tmp) / "catalogue"
        updater = SharedSearchIndex(store, folder, version)
        first_build, _ = timed(lambda: updater.refresh(store.catalogue_generation(), wait=True))
        rebuild, update, remap = [], [], []
        for r in range(args.repeats):
            picked = rng.choice(args.products, args.changes, replace=False)
            store.put_vectors("v1", [(f"h{i}", v) for i, v in zip(picked, unit(rng, args.changes, args.dim))])
            generation = store.catalogue_generation()

            def rebuild_one() -> SearchIndex:
                index = SearchIndex(Path(tmp) / f"old-{r}", "v1", args.dim)
                index.rebuild(store.iter_product_vectors("v1"))
                return index

            rebuild.append(timed(rebuild_one)[0])
            update.append(timed(lambda: updater.refresh(generation, wait=True))[0])
            reader = SharedSearchIndex(store, folder, version)  # another process, first look at the new files
            remap.append(timed(lambda: reader._map_newest())[0])
            assert reader.current is not None and len(reader.current) == args.products
        store.close()

    before = statistics.median(rebuild) * args.processes
    now = statistics.median(update) + statistics.median(remap) * (args.processes - 1)
    result = {
        "products": args.products,
        "dim": args.dim,
        "changes": args.changes,
        "processes": args.processes,
        "first_build_s": first_build,
        "rebuild_per_process_s": statistics.median(rebuild),
        "before_host_s": before,
        "update_s": statistics.median(update),
        "map_s": statistics.median(remap),
        "now_host_s": now,
        "speedup": before / now,
        "products_applied": updater.counts.products_applied,
        "rebuilds_by_updater": updater.counts.rebuilds,
    }
    print(f"{args.products:,} products x {args.dim}, {args.changes} changed, {args.processes} API processes")
    print(f"  first build (shared, once per host)     {first_build:8.2f} s")
    print(
        f"  before: rebuild per process             {result['rebuild_per_process_s']:8.3f} s  "
        f"x{args.processes} = {before:.3f} s of work per change window"
    )
    print(f"  now: one process applies the changes    {result['update_s']:8.3f} s")
    print(f"       each other process maps the files  {result['map_s']:8.3f} s  -> {now:.3f} s")
    print(f"  speedup {result['speedup']:.1f}x (the same run)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
