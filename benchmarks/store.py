"""Benchmark of the embedding store, the ranking kernel and the FAISS catalogue index.

    python benchmarks/store.py [--json benchmarks/results/store.json] [--quick]

What is measured (k = 10, d = 128, one query at a time, one client thread):
  warm    : the process cache holds the decoded block; a ranking costs one stamp check
            (one Lua call on Redis / two indexed SELECTs on sqlite) + GEMV + top-k.
  cold    : the process cache is cleared before each call; the packed block is valid in the
            store, so a ranking reads it in one call, decodes it (fp16 -> fp32) and scores.
  rebuild : the exhibition is re-put before each call (generation bumped), so the store must
            reassemble the packed block from product records and vector slabs, then score.
Redis memory per vector: INFO used_memory delta over storing N vectors of a fresh version
(slabs + index buckets), divided by N. FAISS data: clustered synthetic vectors (see bench_faiss). Scoring throughput: float32 GEMV over 100k x 128
against the bandwidth of a numpy copy of a 256 MB array (read + write bytes per second).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.search_index import SearchIndexConfig, SearchIndex  # noqa: E402
from indexer.config import EmbeddedStoreConfig, RedisStoreConfig  # noqa: E402
from indexer.embedded_store import EmbeddedStore  # noqa: E402
from indexer.redis_store import RedisStore  # noqa: E402
from indexer.store import VectorStore  # noqa: E402

DIM = 128
K = 10


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def timed(fn, repeats: int, before=None) -> dict[str, float]:
    out = []
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    a = np.array(out)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "n": repeats}


def fill(store: VectorStore, sizes: list[int], rng: np.random.Generator) -> dict[str, float]:
    n = max(sizes)
    t = time.perf_counter()
    store.register_version("bench", DIM, "bundles/bench", expected_vectors=n)
    store.activate("bench")
    store.import_products([(f"p{i}", f"https://img/{i}.jpg", f"h{i}") for i in range(n)])
    vecs = unit(rng, n)
    for s in range(0, n, 2000):
        store.put_vectors("bench", [(f"h{i}", vecs[i]) for i in range(s, min(n, s + 2000))])
    for size in sizes:  # exhibition e{size} = the first `size` products
        store.put_exhibition(f"e{size}", {"name": f"bench {size}"}, [f"p{i}" for i in range(size)])
    return {"fill_s": time.perf_counter() - t}


def bench_ranking(store: VectorStore, sizes: list[int], rng: np.random.Generator, quick: bool) -> dict:
    results = {}
    for size in sizes:
        eid, q = f"e{size}", unit(rng, 1)[0]
        big = size >= 100_000
        ids = [f"p{i}" for i in range(size)]
        store.rank(eid, q, k=K)  # build the block once
        row = {
            "warm": timed(lambda: store.rank(eid, q, k=K), 30 if quick else (100 if big else 500)),
            "cold": timed(
                lambda: store.rank(eid, q, k=K), 5 if quick else (20 if big else 100), before=store.clear_process_cache
            ),
        }
        row["rebuild"] = timed(
            lambda: store.rank(eid, q, k=K),
            3 if quick else (5 if big else 30),
            before=lambda: store.put_exhibition(eid, {"name": "b"}, ids),
        )
        results[str(size)] = row
    return results


def redis_memory_per_vector(url: str, n: int, rng: np.random.Generator) -> dict:
    prefix = f"clik-bench-mem-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(RedisStoreConfig(url=url, prefix=prefix))
    try:
        v = store.register_version("mem", DIM, expected_vectors=n)
        vecs = unit(rng, n)
        before = store.r.info("memory")["used_memory"]
        for s in range(0, n, 2000):
            store.put_vectors("mem", [(f"m{i}", vecs[i]) for i in range(s, min(n, s + 2000))])
        after = store.r.info("memory")["used_memory"]
        slab = store.r.memory_usage(prefix + f"vs:{v.id}:0")
        buckets = list(store.r.scan_iter(match=prefix + f"vi:{v.id}:*", count=5000))
        bucket_bytes = sum(store.r.memory_usage(k) for k in buckets[:200]) / min(200, len(buckets))
        per_bucket = n / len(buckets)
        return {
            "vectors": n,
            "bytes_per_vector_info_delta": (after - before) / n,
            "slab_bytes_per_vector": slab / (((1 << 20) - 16) // (DIM * 2)),
            "index_bytes_per_vector": bucket_bytes / per_bucket,
            "raw_fp16_bytes": DIM * 2,
        }
    finally:
        keys = list(store.r.scan_iter(match=prefix + "*", count=5000))
        for i in range(0, len(keys), 5000):
            store.r.delete(*keys[i : i + 5000])
        store.close()


def scoring_throughput(rng: np.random.Generator) -> dict:
    m = unit(rng, 100_000)
    q = unit(rng, 1)[0]
    t = timed(lambda: m @ q, 50)["p50_ms"] / 1e3
    big = np.ones(256 * 2**20 // 8)
    tc = timed(lambda: big.copy(), 10)["p50_ms"] / 1e3
    scoring_gbs = m.nbytes / t / 1e9
    copy_gbs = 2 * big.nbytes / tc / 1e9
    return {
        "score_100k_ms": t * 1e3,
        "score_read_GBps": scoring_gbs,
        "copy_GBps_read_plus_write": copy_gbs,
        "ratio": scoring_gbs / copy_gbs,
    }


def bench_faiss(rng: np.random.Generator, quick: bool, tmp: Path) -> dict:
    out: dict = {}
    n_big = 200_000 if quick else 1_000_000
    # Image embeddings are clustered (similar products lie close), unlike uniform noise on the
    # sphere, which no approximate index can partition: 4,000 centres + per-image noise.
    centres = unit(rng, 4000)
    x = centres[rng.integers(0, 4000, n_big)] + 0.08 * rng.standard_normal((n_big, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    queries = x[rng.integers(0, n_big, 200)] + 0.05 * rng.standard_normal((200, DIM), dtype=np.float32)
    ids = [f"p{i}" for i in range(n_big)]
    for n in (100_000, n_big):
        exact = SearchIndex(tmp / f"exact{n}", "v", DIM, SearchIndexConfig(exact_threshold=10**9))
        t = time.perf_counter()
        exact.add(ids[:n], x[:n])
        row: dict = {"exact_build_s": time.perf_counter() - t}
        it = iter(range(10**9))
        row["exact"] = timed(lambda: exact.search(queries[next(it) % 200], K), 20 if n > 100_000 else 100)
        if n == n_big:
            truth = [[p for p, _ in exact.search(q, K)] for q in queries[:50]]
            del exact
            t = time.perf_counter()
            ivf = SearchIndex(tmp / f"ivf{n}", "v", DIM, SearchIndexConfig(exact_threshold=1))
            ivf.rebuild([(ids[:n], x[:n])])
            row["ivf_build_s"] = time.perf_counter() - t
            row["ivf_nlist"] = int(ivf._index.nlist)
            row["ivf_nprobe"] = ivf.config.nprobe
            it = iter(range(10**9))
            row["ivf"] = timed(lambda: ivf.search(queries[next(it) % 200], K), 200)
            got = [[p for p, _ in ivf.search(q, K)] for q in queries[:50]]
            row["ivf_recall_at_10"] = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(got, truth)]))
            t = time.perf_counter()
            ivf.save()
            row["ivf_save_s"] = time.perf_counter() - t
        out[str(n)] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default="benchmarks/results/store.json")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--sizes", default="50,1000,10000,100000")
    ap.add_argument("--quick", action="store_true", help="few repeats, FAISS at 200k instead of 1M")
    ap.add_argument("--skip-faiss", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="clik-bench-"))
    report: dict = {"dim": DIM, "k": K, "sizes": sizes, "ranking": {}}
    try:
        prefix = f"clik-bench-{uuid.uuid4().hex[:8]}:"
        backends = {
            "redis": lambda: RedisStore(RedisStoreConfig(url=args.redis_url, prefix=prefix)),
            "embedded": lambda: EmbeddedStore(EmbeddedStoreConfig(path=tmp / "store")),
        }
        for name, make in backends.items():
            store = make()
            try:
                info = fill(store, sizes, rng)
                print(f"[{name}] filled {max(sizes)} products in {info['fill_s']:.1f}s", flush=True)
                report["ranking"][name] = bench_ranking(store, sizes, rng, args.quick)
                report["ranking"][name]["fill_s"] = info["fill_s"]
            finally:
                if isinstance(store, RedisStore):
                    keys = list(store.r.scan_iter(match=prefix + "*", count=5000))
                    for i in range(0, len(keys), 5000):
                        store.r.delete(*keys[i : i + 5000])
                store.close()
        report["redis_memory"] = redis_memory_per_vector(args.redis_url, 100_000, rng)
        report["scoring"] = scoring_throughput(rng)
        if not args.skip_faiss:
            report["faiss"] = bench_faiss(rng, args.quick, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(report)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {path}")


def print_table(r: dict) -> None:
    print(f"\nRanking latency, k={r['k']}, d={r['dim']} (ms, p50 / p99)")
    print(f"{'backend':9} {'products':>8} | {'warm':>15} | {'cold':>15} | {'rebuild':>17}")
    for backend, rows in r["ranking"].items():
        for size in r["sizes"]:
            row = rows[str(size)]
            cells = [f"{row[c]['p50_ms']:7.2f} / {row[c]['p99_ms']:6.2f}" for c in ("warm", "cold", "rebuild")]
            print(f"{backend:9} {size:>8} | {cells[0]:>15} | {cells[1]:>15} | {cells[2]:>17}")
    m = r["redis_memory"]
    print(
        f"\nRedis memory per 128-d vector ({m['vectors']} vectors): {m['bytes_per_vector_info_delta']:.1f} B"
        f" (INFO delta; slabs {m['slab_bytes_per_vector']:.1f} B + index ~{m['index_bytes_per_vector']:.1f} B;"
        f" raw fp16 {m['raw_fp16_bytes']} B)"
    )
    s = r["scoring"]
    print(
        f"Scoring 100k x 128 fp32: {s['score_100k_ms']:.2f} ms = {s['score_read_GBps']:.1f} GB/s read;"
        f" numpy copy {s['copy_GBps_read_plus_write']:.1f} GB/s (read+write); ratio {s['ratio']:.2f}"
    )
    for n, row in r.get("faiss", {}).items():
        line = f"FAISS {int(n):>9,} vectors: exact {row['exact']['p50_ms']:.2f} / {row['exact']['p99_ms']:.2f} ms"
        if "ivf" in row:
            line += (
                f"; IVF(nlist={row['ivf_nlist']}, nprobe={row['ivf_nprobe']}) {row['ivf']['p50_ms']:.2f} / "
                f"{row['ivf']['p99_ms']:.2f} ms, recall@10 {row['ivf_recall_at_10']:.2f},"
                f" build {row['ivf_build_s']:.1f} s"
            )
        print(line)


if __name__ == "__main__":
    main()
