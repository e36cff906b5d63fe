"""Benchmark of a rollback (and of the coverage count behind the gate and /readyz).

    python benchmarks/rollout.py [--products 100000] [--json benchmarks/results/rollout.json]

A catalogue of N encoded products whose images have vectors in two model versions (v1, then
v2 activated by a re-index job, v1 kept as its previous version), on Redis and on the embedded
store. Measured, each a median of --rounds:
  coverage : store.coverage([v1, v2]) (one pass over the catalogue: what the gate and /readyz pay)
  rollback : the whole `clik models rollback` path in process (worker.reindex.run for v1 with the
             rollback policy: missing scan, coverage gate, atomic switch, straggler scan),
             then forward again to v2, so every round starts from the same state.
Vectors are random unit vectors (nothing is encoded: nothing is missing, as in a rollback).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.support import delete_prefix  # noqa: E402

from indexer.config import EmbeddedStoreConfig, RedisStoreConfig  # noqa: E402
from indexer.embedded_store import EmbeddedStore  # noqa: E402
from indexer.redis_store import RedisStore  # noqa: E402
from indexer.store import VectorStore  # noqa: E402

DIM = 128


def load(store: VectorStore, n: int) -> None:
    rng = np.random.default_rng(0)
    for name in ("v1", "v2"):
        store.register_version(name, DIM, bundle_uri=f"/nonexistent/{name}", expected_vectors=n)
    batch = 5000
    for start in range(0, n, batch):
        ids = range(start, min(start + batch, n))
        store.import_products([(f"p{i}", f"https://img.example/{i}.jpg", f"h{i}") for i in ids])
        for name in ("v1", "v2"):
            vecs = rng.standard_normal((len(ids), DIM), dtype=np.float32)
            store.put_vectors(name, [(f"h{i}", v) for i, v in zip(ids, vecs)])
    store.activate("v1")


def rollout(store: VectorStore, version: str) -> float:
    from clik.image_source import FetchLimits
    from worker import reindex
    from worker.encode import EncoderCache
    from worker.rollout import RolloutPolicy

    policy = RolloutPolicy(canary_exhibitions=0)
    started = time.perf_counter()
    job = reindex.run(store, version, EncoderCache("cpu"), FetchLimits(), policy=policy)
    elapsed = time.perf_counter() - started
    assert job.state == reindex.SWITCHED and store.active_version().name == version, job.decision
    return elapsed


def bench(store: VectorStore, n: int, rounds: int) -> dict:
    started = time.perf_counter()
    load(store, n)
    loaded_s = time.perf_counter() - started
    rollout(store, "v2")  # v2 active, v1 its previous version: the state a rollback starts from
    coverage, back, forward = [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        cov = store.coverage(["v1", "v2"])
        coverage.append(time.perf_counter() - t)
        assert cov.covered == {"v1": n, "v2": n}
        back.append(rollout(store, "v1"))
        forward.append(rollout(store, "v2"))
    return {
        "products": n,
        "load_s": round(loaded_s, 1),
        "coverage_ms": round(statistics.median(coverage) * 1e3, 2),
        "rollback_ms": round(statistics.median(back) * 1e3, 1),
        "forward_again_ms": round(statistics.median(forward) * 1e3, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = {}
    prefix = f"clik-bench-rollout-{uuid.uuid4().hex[:8]}:"
    redis_store = RedisStore(RedisStoreConfig(url=args.redis, prefix=prefix))
    try:
        results["redis"] = bench(redis_store, args.products, args.rounds)
    finally:
        delete_prefix(redis_store.r, prefix)
        redis_store.close()
    with tempfile.TemporaryDirectory() as tmp:
        with EmbeddedStore(EmbeddedStoreConfig(path=Path(tmp))) as embedded:
            results["embedded"] = bench(embedded, args.products, args.rounds)
    for backend, r in results.items():
        print(
            f"{backend:>8}: {r['products']:,} products  coverage {r['coverage_ms']:.2f} ms  "
            f"rollback {r['rollback_ms']:.1f} ms  forward again {r['forward_again_ms']:.1f} ms  (load {r['load_s']}s)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
