"""Cost of the diverse top-6 on a 10,000-product exhibition, side by side with the plain
request, in one run.

    python benchmarks/diverse.py [--products 10000] [--dim 512] [--json benchmarks/results/diverse.json]

One exhibition of N products with random unit vectors in Redis, every product with a family
(groups of 4, like colourways) and a numeric attr, so the merchandising path is the one a real
catalogue takes. A warm request, with the service's own code for what follows the topic lookup
(store.scoring_block, the merch records from the process cache, api.explained.explain), is
timed three ways, interleaved round by round so the machine's noise hits all alike (median
of --rounds):
  plain      topk=6, no records at all (the ranking before this change)
  rules      topk=6 with facets and an exhibition's overrides (a pin, a block), not diverse
  diverse    topk=6&diverse=true with the same records
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
from api.merch import MerchState, facet_of  # noqa: E402
from api.merch_rank import Rules, align  # noqa: E402
from api.per_block_cache import PerBlockCache  # noqa: E402
from clik.diverse import DiverseOptions  # noqa: E402
from clik.topic_fit import DEFAULT_FIT  # noqa: E402
from indexer.config import RedisStoreConfig  # noqa: E402
from indexer.redis_store import RedisStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--topk", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # as the API runs BLAS (api/settings.py blas_threads)
    prefix = f"clik-bench-diverse-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(RedisStoreConfig(url=args.redis, prefix=prefix))
    rng = np.random.default_rng(0)
    n, dim = args.products, args.dim
    try:
        store.register_version("v", dim, expected_vectors=n)
        store.activate("v")
        store.import_products([(f"p{i}", f"https://img.example/{i}.jpg", f"h{i}") for i in range(n)])
        for i in range(n):  # the business-rule attrs live with the products
            store.put_product(f"p{i}", f"https://img.example/{i}.jpg", {"family": f"f{i // 4}", "margin": float(i % 7)})
        for start in range(0, n, 2000):
            vecs = rng.standard_normal((min(2000, n - start), dim), dtype=np.float32)
            store.put_vectors("v", [(f"h{start + i}", v) for i, v in enumerate(vecs)])
        store.put_exhibition("e", {"name": "x"}, [f"p{i}" for i in range(n)])
        query, topic = rng.standard_normal(dim).astype(np.float32), rng.standard_normal(dim).astype(np.float32)
        fits, aligned = PerBlockCache(64 * 1024 * 1024), PerBlockCache(16 * 1024 * 1024)
        merch = MerchState(store, ttl_s=1.0)
        merch.write_overrides("e", {"p17": 2}, ["p3"], {"margin": 0.01}, "bench", "put")
        options = DiverseOptions()

        def plain():
            name, block = store.scoring_block("e")
            return explain("e", name, block, query, topic, DEFAULT_FIT, 0.5, 0, args.topk, fits, "t")

        def with_rules(diverse: bool):
            name, block = store.scoring_block("e")
            overrides = merch.overrides("e")
            rules = Rules(overrides, overrides.boosts or {}, options if diverse else None)
            facets = aligned.get(
                block,
                (),
                lambda: align(
                    block,
                    {
                        p: facet_of(a, strict=False)
                        for p, a in store.get_attrs([str(x) for x in block.product_ids]).items()
                    },
                ),
            )
            return explain("e", name, block, query, topic, DEFAULT_FIT, 0.5, 0, args.topk, fits, "t", rules, facets)

        fns = {"plain": plain, "rules": lambda: with_rules(False), "diverse": lambda: with_rules(True)}
        for fn in fns.values():
            fn()  # warm the block, fit and facet caches
        div = fns["diverse"]()
        families = {it.product_id: f"f{int(it.product_id[1:]) // 4}" for it in div.items}
        assert len(set(families.values())) == len(div.items) == args.topk
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.rounds):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t) * 1e3)
        result = {
            "products": n,
            "dim": dim,
            "topk": args.topk,
            "rounds": args.rounds,
            **{f"{k}_ms": round(statistics.median(v), 3) for k, v in times.items()},
            **{f"{k}_p99_ms": round(float(np.percentile(v, 99)), 3) for k, v in times.items()},
        }
        result["diverse_added_ms"] = round(result["diverse_ms"] - result["plain_ms"], 3)
        result["rules_added_ms"] = round(result["rules_ms"] - result["plain_ms"], 3)
    finally:
        delete_prefix(store.r, prefix)
        store.close()
    print(
        f"{n:,} products, dim {dim}, top {args.topk}: plain {result['plain_ms']:.3f} ms, rules "
        f"{result['rules_ms']:.3f} ms (+{result['rules_added_ms']:.3f}), diverse {result['diverse_ms']:.3f} ms "
        f"(+{result['diverse_added_ms']:.3f} ms over plain)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
