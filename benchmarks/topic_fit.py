"""Cost of topic fit in the ranking, side by side with the plain ranking, in one run.

    python benchmarks/topic_fit.py [--products 10000] [--json benchmarks/results/topic_fit.json]

One exhibition of N products with random unit vectors in Redis; a request is timed three ways,
interleaved round by round so the machine's noise hits all alike (median of --rounds):
  plain      store.rank(k=1): the ranking before topic fit (stamp check, GEMV, top-k)
  explained  store.scoring_block + api.explained.explain with its cache warm: what a warm
             GET /exhibitions/{id}/representative now does beyond the topic lookup
  first      the same with the cache cleared: the first request after the exhibition, its
             products or their vectors changed (scores and topic fit computed once, then cached)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.support import delete_prefix  # noqa: E402

from api.explained import explain  # noqa: E402
from api.per_block_cache import PerBlockCache  # noqa: E402
from clik.topic_fit import DEFAULT_FIT  # noqa: E402
from indexer.config import RedisStoreConfig  # noqa: E402
from indexer.redis_store import RedisStore  # noqa: E402

DIM = 128


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # as the API runs BLAS (api/settings.py blas_threads)
    prefix = f"clik-bench-fit-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(RedisStoreConfig(url=args.redis, prefix=prefix))
    rng = np.random.default_rng(0)
    try:
        store.register_version("v", DIM, expected_vectors=args.products)
        store.activate("v")
        n = args.products
        store.import_products([(f"p{i}", f"https://img.example/{i}.jpg", f"h{i}") for i in range(n)])
        for start in range(0, n, 5000):
            vecs = rng.standard_normal((min(5000, n - start), DIM), dtype=np.float32)
            store.put_vectors("v", [(f"h{start + i}", v) for i, v in enumerate(vecs)])
        store.put_exhibition("e", {"name": "x"}, [f"p{i}" for i in range(n)])
        query, topic = rng.standard_normal(DIM).astype(np.float32), rng.standard_normal(DIM).astype(np.float32)
        fits = PerBlockCache(64 * 1024 * 1024)

        def plain():
            store.rank("e", query, k=1)

        def explained():
            name, block = store.scoring_block("e")
            explain("e", name, block, query, topic, DEFAULT_FIT, 0.5, 0, 1, fits, "t")

        def first():
            fits.clear()
            explained()

        plain(), explained()  # warm the block cache
        times = {"plain": [], "explained": [], "first": []}
        for r in range(args.rounds):
            for name, fn in (("plain", plain), ("explained", explained), ("first", first)):
                if name == "first" and r % 10:
                    continue  # the cold path is slow; a tenth of the rounds is plenty
                t = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t) * 1e3)
        result = {"products": n, **{f"{k}_ms": round(statistics.median(v), 3) for k, v in times.items()}}
        result["explained_over_plain"] = round(result["explained_ms"] / result["plain_ms"], 3)
    finally:
        delete_prefix(store.r, prefix)
        store.close()
    print(
        f"{result['products']:,} products: plain {result['plain_ms']:.3f} ms, explained (warm) "
        f"{result['explained_ms']:.3f} ms ({result['explained_over_plain']:.2f}x), first after a change "
        f"{result['first_ms']:.2f} ms"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
