"""How big a Redis (Cluster) a catalogue needs, and how its keys spread over the masters.

    python benchmarks/cluster_sizing.py --json benchmarks/results/cluster_sizing.json
    python benchmarks/cluster_sizing.py --products 100000 --exhibitions 1000 --dim 128

Fills a store on a local three-master Redis Cluster it starts itself (tests/redis_servers.py;
``--store URL`` for another Redis or cluster) through the store's own API: products (attrs
included), encoded, with one image each, vectors of one model version, exhibitions of
``--per-exhibition`` products, every exhibition ranked once (so its packed block exists), the
products' events in the pending set, and a few shopper events. Then it measures every key with
``MEMORY USAGE <key> SAMPLES 0`` (exact), groups the keys by family (``p:``, ``vs:``, ``b:``, ...)
and prints bytes per product and per exhibition, and the keys and bytes on each master.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from indexer.config import RedisStoreConfig  # noqa: E402
from indexer.events import RedisEventLog  # noqa: E402
from indexer.redis_client import is_cluster  # noqa: E402
from indexer.redis_store import RedisStore  # noqa: E402

# What each key family is counted against: per product, per exhibition, or the store as a whole.
PER_PRODUCT = {"p", "pe", "hp", "vi", "vs", "pending", "due"}
PER_EXHIBITION = {"e", "b", "vg", "ex", "ev:c"}


def family(key: str, prefix: str) -> str:
    """The key's family: its name without the prefix (or tag) and without ids."""
    rest = key.removeprefix("{" + prefix).removeprefix(prefix)
    rest = re.sub(r"^(ingest:|ev:)?\}?", lambda m: m.group(1) or "", rest)
    if rest.startswith("ingest:"):
        return rest.split(":")[1]
    if rest.startswith("ev:"):
        return "ev:" + rest.split(":")[1]
    return rest.split(":")[0]


def fill(store: RedisStore, args) -> None:
    rng = np.random.default_rng(0)
    version = "v1"
    store.register_version(version, args.dim, expected_vectors=args.products)
    store.activate(version)
    ids = [f"prod-{i:07d}" for i in range(args.products)]
    attrs = {"brand": "acme", "price": 19.99, "available": True}
    for start in range(0, len(ids), 2000):
        part = ids[start : start + 2000]
        for pid in part:  # attrs ride along with the product record, as the API writes them
            store.put_product(pid, f"https://images.example.com/{pid}.jpg", attrs)
        hashes = [hashlib.sha256(pid.encode()).hexdigest() for pid in part]  # one image each
        store.import_products([(pid, f"https://images.example.com/{pid}.jpg", h) for pid, h in zip(part, hashes)])
        vecs = rng.standard_normal((len(part), args.dim)).astype(np.float32)
        store.put_vectors(version, list(zip(hashes, vecs)))
    for e in range(args.exhibitions):
        members = [ids[int(i)] for i in rng.choice(len(ids), args.per_exhibition, replace=False)]
        store.put_exhibition(f"exh-{e:05d}", {"name": f"exhibition {e}", "cat1": "clothes"}, members)
        store.rank(f"exh-{e:05d}", rng.standard_normal(args.dim).astype(np.float32))
    pending = store.pending_set()
    for start in range(0, len(ids), 1000):
        pending.add(ids[start : start + 1000])
    events = RedisEventLog(store.r, store.prefix)
    batch = [
        {
            "event_id": uuid.uuid4().hex,
            "type": "impression",
            "exhibition_id": f"exh-{e % args.exhibitions:05d}",
            "product_id": ids[e],
            "model_version": version,
            "arm": "",
            "ts": time.time(),
        }
        for e in range(min(1000, args.products))
    ]
    events.append(batch)
    events.commit(events.read("sizing", count=len(batch), block_ms=100))


def measure(store: RedisStore, args) -> dict:
    r = store.r
    nodes = r.get_primaries() if is_cluster(r) else [None]
    by_family: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_node = []
    for node in nodes:
        client = r.get_redis_connection(node) if node is not None else r
        keys = [
            k
            for pattern in (store.prefix + "*", "{" + store.prefix + "*")
            for k in client.scan_iter(match=pattern, count=5000)
        ]
        sizes = []
        for start in range(0, len(keys), 5000):
            pipe = client.pipeline(transaction=False)
            for k in keys[start : start + 5000]:
                pipe.memory_usage(k, samples=0)
            sizes += pipe.execute()
        for k, size in zip(keys, sizes):
            f = by_family[family(k.decode(), store.prefix)]
            f[0] += 1
            f[1] += int(size or 0)
        name = f"{node.host}:{node.port}" if node is not None else "single"
        by_node.append({"node": name, "keys": len(keys), "bytes": int(sum(int(s or 0) for s in sizes))})
    per_product = sum(v[1] for k, v in by_family.items() if k in PER_PRODUCT) / args.products
    vectors = sum(v[1] for k, v in by_family.items() if k in {"vi", "vs"}) / args.products
    per_exhibition = sum(v[1] for k, v in by_family.items() if k in PER_EXHIBITION) / args.exhibitions
    blocks = by_family["b"][1] / args.exhibitions
    return {
        "families": {k: {"keys": v[0], "bytes": v[1]} for k, v in sorted(by_family.items())},
        "nodes": by_node,
        "bytes_per_product": per_product,
        "bytes_per_product_vectors": vectors,
        "bytes_per_exhibition": per_exhibition,
        "bytes_per_exhibition_block": blocks,
        "bytes_per_exhibition_member_block": blocks / args.per_exhibition,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=20_000)
    ap.add_argument("--exhibitions", type=int, default=200)
    ap.add_argument("--per-exhibition", type=int, default=200)
    ap.add_argument("--dim", type=int, default=128, help="embedding size (the default towers: 128)")
    ap.add_argument("--stores", type=int, default=3, help="stores (prefixes) filled side by side: how tenants spread")
    ap.add_argument("--store", default=None, help="a redis:// or redis+cluster:// URL (default: a local cluster)")
    ap.add_argument("--json", default="benchmarks/results/cluster_sizing.json")
    args = ap.parse_args()
    from tests.support.redis_servers import redis_cluster

    with (
        tempfile.TemporaryDirectory() as tmp,
        contextlib.nullcontext(args.store) if args.store else redis_cluster(Path(tmp)) as url,
    ):
        results = []
        for s in range(args.stores):
            store = RedisStore(RedisStoreConfig(url=url, prefix=f"sizing{s}-{uuid.uuid4().hex[:6]}:"))
            fill(store, args)
            results.append(measure(store, args))
            store.close()
    first = results[0]
    print(
        f"{args.products:,} products, {args.exhibitions:,} exhibitions of {args.per_exhibition}, dim {args.dim}; "
        f"MEMORY USAGE SAMPLES 0 on every key"
    )
    print(f"{'family':10} {'keys':>8} {'bytes':>12}")
    for name, v in first["families"].items():
        print(f"{name:10} {v['keys']:>8,} {v['bytes']:>12,}")
    print(
        f"bytes per product: {first['bytes_per_product']:,.0f} (of which vectors + index "
        f"{first['bytes_per_product_vectors']:,.0f}); per exhibition: {first['bytes_per_exhibition']:,.0f} "
        f"(packed block {first['bytes_per_exhibition_block']:,.0f}, "
        f"{first['bytes_per_exhibition_member_block']:,.0f} per member)"
    )
    print("keys and bytes per master, store by store:")
    for s, res in enumerate(results):
        print(
            f"  store {s}: "
            + ", ".join(f"{n['node']} {n['keys']:,} keys {n['bytes'] / 1e6:,.1f} MB" for n in res["nodes"])
        )
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "benchmark": "cluster_sizing",
                "products": args.products,
                "exhibitions": args.exhibitions,
                "per_exhibition": args.per_exhibition,
                "dim": args.dim,
                "stores": results,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
