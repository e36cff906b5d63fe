"""Bulk load through the pending set: claim rate from the first to the last 10% of a big load.

    python benchmarks/bulk_load.py --products 1000000 --json benchmarks/results/bulk_load.json
    python benchmarks/bulk_load.py --quick          # 20,000 products each way: a smoke run

What runs is the real queue mechanics of a Redis store: products imported into the store
(``import_products``), one event per 1,000 products recorded in the pending set
(``RedisStore.pending_set().add``, what each ``clik.encode_products`` task does), then ``--drains`` worker
processes running ``worker.ingest.drain`` (claims with leases, renewals, fetch, content hash,
encode, vectors and statuses written, compare-and-delete). The image tower is **clik-tiny-test**
(random weights, a few thousand parameters), named so in the output: this measures the queue,
not a model. ``--images`` distinct JPEG files back all products (product i shows image
i mod images), so most products reuse a vector, as products sharing a packshot do.
``--stuck-share`` of the products point at an image host that is down (a closed port: a
transient error), so they are postponed (retry in an hour) and stay pending to the end: what a
claim must step over in a real load when one host fails.

The same load runs twice, in the same process tree and on the same Redis: with the pending set
of this tree (a sorted set of due times) at ``--products``, and with the scanning claim it replaced
(benchmarks/pending_scan_baseline.py) at ``--baseline-products`` (0: skip). Reported per run: the
claim rate (claims per second of claim time, and products claimed per second of claim time) in
the first and the last 10% of the products claimed, their ratio (target: last within 20% of
first), claim latency p50/p99, the wall-clock rate, and Redis memory per pending entry. Claim
time is the round trip as the drain sees it. (Reading the claim script's own duration from the
SLOWLOG with every command logged was tried: polling it stalled Redis for seconds at 100k
products.) By default a private redis-server is started in a temp folder (``--store URL`` to
use another).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import platform
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOWER = "clik-tiny-test"
EVENT_SIZE = 1000  # products per clik.encode_products event
RETRY_IN_S = 3600.0  # a down host's products stay postponed for the whole run


def _pending_class(kind: str):
    if kind == "scan":
        from benchmarks.pending_scan_baseline import PendingSet as Scan

        return Scan
    from indexer.redis_pending import RedisPendingSet

    return RedisPendingSet  # what RedisStore.pending_set() opens


def _timed(cls, log: list):
    class Timed(cls):  # the real class; only its claim is clocked
        def claim(self, owner, limit, *args, **kwargs):
            start = time.perf_counter()
            out = super().claim(owner, limit, *args, **kwargs)
            log.append((time.time(), time.perf_counter() - start, len(out)))
            return out

    return Timed


def _jpeg(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once this socket is closed


def record_drain(store, pending, owner: str, batch: int, sources) -> None:
    """``--encode record``: worker.ingest.drain's loop over the pending set (claim, leases renewed
    by a LeaseKeeper, transient failures counted and postponed, compare-and-delete, batch stats),
    with each product's vector recorded directly (its image's vector is already stored) instead of
    fetched and encoded: the queue at full speed, without a tower. `sources(pid)` gives the
    product's (image source, image hash) by the rule the load was written with, which saves the
    product read a real drain makes."""
    from worker.lease_keeper import LeaseKeeper

    while True:
        pending.drain_started()
        claimed = pending.claim(owner, batch)
        if not claimed:
            return
        with LeaseKeeper(pending, owner, list(claimed)):
            rows = {pid: sources(pid) for pid in claimed}
            down = [pid for pid, (_, h) in rows.items() if h is None]
            store.import_products([(pid, src, h) for pid, (src, h) in rows.items() if h is not None])
        pending.complete({pid: token for pid, token in claimed.items() if pid not in down})
        for pid in down:  # the host is down: a transient error, retried later
            pending.count_failure(pid)
            pending.postpone(pid, RETRY_IN_S)
        pending.count_batch(len(claimed), 0)


class Sources:
    """Product i shows image i mod images, except every `every`-th, which is on the down host."""

    def __init__(self, folder: str, images: int, every: int, down: str, hashes: list[str]) -> None:
        self.folder, self.images, self.every, self.down, self.hashes = folder, images, every, down, hashes

    def __call__(self, pid: str) -> tuple[str, str | None]:
        i = int(pid[1:])
        if self.every and i % self.every == self.every - 1:
            return f"{self.down}/{i}.jpg", None
        return f"{self.folder}/{i % self.images}.jpg", self.hashes[i % self.images] if self.hashes else None


def drain_process(
    kind: str,
    url: str,
    prefix: str,
    folder: str,
    batch: int,
    out: str,
    ready,
    go,
    encode: str = "tower",
    rule: tuple | None = None,
) -> None:
    """One worker: drains until only postponed products are left; writes its claim log."""
    from indexer.config import RedisStoreConfig
    from indexer.redis_store import RedisStore

    log: list = []
    store = RedisStore(RedisStoreConfig(url=url, prefix=prefix))
    pending = _timed(_pending_class(kind), log)(store.r, prefix)
    owner = f"drain-{uuid.uuid4().hex[:8]}"
    if encode == "tower":  # torch only here: `record` drains start in a second, not a minute
        import torch

        from clik.image_source import FetchLimits
        from worker.encode import EncoderCache
        from worker.ingest import DrainOptions, drain

        torch.set_num_threads(1)
        limits = FetchLimits(file_roots=(folder,), allow_private_hosts=True, connect_timeout_s=1.0)
        options = DrainOptions(batch_size=batch, retry_delay=lambda attempt: RETRY_IN_S, max_task_s=1e9)
        encoders = EncoderCache("cpu", batch)
        active = store.active_version()
        assert active is not None
        encoders.get(active)  # load the tower before the clock starts
    ready.release()
    go.wait()
    while True:
        if encode == "record":
            record_drain(store, pending, owner, batch, Sources(*rule))
        else:
            drain(store, pending, owner, encoders, limits, options)
        due = pending.next_due()
        if due is None or due > RETRY_IN_S / 2:
            break  # nothing left but the down host's products
        time.sleep(min(due, 0.2))  # another drain holds the rest: look again shortly
    Path(out).write_text(json.dumps(log))


def _decile_figures(claims: list[tuple[float, float, int]]) -> dict:
    """First and last 10% of the products claimed, claims ordered by time."""
    claims = [c for c in sorted(claims) if c[2] > 0]  # the empty claims of drains running dry at the end
    total = sum(c[2] for c in claims)
    cum, first, last = 0, [], []
    for c in claims:
        if cum < 0.1 * total:
            first.append(c)
        cum += c[2]
        if cum > 0.9 * total:
            last.append(c)

    def rates(part):
        busy = sum(c[1] for c in part)
        lat = sorted(c[1] * 1000 for c in part)
        wall = part[-1][0] - part[0][0] if len(part) > 1 else float("nan")
        return {
            "claims": len(part),
            "products": sum(c[2] for c in part),
            "claims_per_s": len(part) / busy,
            "products_claimed_per_s": sum(c[2] for c in part) / busy,
            "claim_ms_p50": lat[len(lat) // 2],
            "claim_ms_p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "wall_products_per_s": sum(c[2] for c in part) / wall if wall > 0 else float("nan"),
        }

    a, b = rates(first), rates(last)
    return {
        "products_claimed": total,
        "claims": len(claims),
        "first_10pct": a,
        "last_10pct": b,
        "last_over_first": b["claims_per_s"] / a["claims_per_s"],
    }


def run(kind: str, n: int, args, url: str, bundle, tmp: Path) -> dict:
    import redis

    from indexer.config import RedisStoreConfig
    from indexer.records import ProductStatus
    from indexer.redis_store import RedisStore

    prefix = f"clik-bulk-{kind}-{uuid.uuid4().hex[:8]}:"
    folder = tmp / f"images-{kind}"
    folder.mkdir()
    for i in range(args.images):
        (folder / f"{i}.jpg").write_bytes(_jpeg(i))
    store = RedisStore(RedisStoreConfig(url=url, prefix=prefix))
    store.register_version(
        bundle.version, bundle.embed_dim, bundle_uri=str(bundle.path or ""), expected_vectors=args.images
    )
    store.activate(bundle.version)
    image_hash: dict[str, str] = {}
    if args.encode == "record":  # the images' vectors, as the tower would have written them once
        import hashlib

        import numpy as np

        rng = np.random.default_rng(0)
        for i in range(args.images):
            path = folder / f"{i}.jpg"
            image_hash[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()  # the content hash
        store.put_vectors(bundle.version, [(h, rng.standard_normal(bundle.embed_dim)) for h in image_hash.values()])
    down = f"http://127.0.0.1:{_closed_port()}/img"
    every = round(1 / args.stuck_share) if args.stuck_share > 0 else 0
    ids = [f"p{i:07d}" for i in range(n)]
    stuck = [pid for i, pid in enumerate(ids) if every and i % every == every - 1]
    stuck_set = set(stuck)
    rule = (str(folder), args.images, every, down, list(image_hash.values()))
    sources = [(pid, Sources(*rule)(pid)[0], None) for pid in ids]
    t = time.perf_counter()
    store.import_products(sources, batch=5000)
    import_s = time.perf_counter() - t

    pending = _pending_class(kind)(store.r, prefix)
    single = isinstance(store.r, redis.Redis)
    before = store.r.info("memory")["used_memory"] if single else 0
    t = time.perf_counter()
    for start in range(0, n, EVENT_SIZE):
        pending.add(ids[start : start + EVENT_SIZE])
    enqueue_s = time.perf_counter() - t
    per_entry = (store.r.info("memory")["used_memory"] - before) / n if single else None

    ctx = mp.get_context("spawn")
    ready, go = ctx.Semaphore(0), ctx.Event()
    outs = [tmp / f"claims-{kind}-{d}.json" for d in range(args.drains)]
    procs = [
        ctx.Process(
            target=drain_process,
            args=(kind, url, prefix, str(folder), args.batch, str(o), ready, go, args.encode, rule),
        )
        for o in outs
    ]
    for p in procs:
        p.start()
    for _ in procs:  # imports and the tower loaded: the clock starts when all are ready
        ready.acquire()
    t = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    drain_s = time.perf_counter() - t
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a drain process failed ({[p.exitcode for p in procs]})")
    claims = [tuple(c) for o in outs for c in json.loads(o.read_text())]

    coverage = store.coverage([bundle.version])
    sample = [ids[i] for i in range(0, n, max(1, n // 200))]
    still = [pid for pid in sample if store.get_product(pid).status is ProductStatus.PENDING]
    ok = coverage.encoded == n - len(stuck) and len(pending) == len(stuck) and all(pid in stuck_set for pid in still)
    result = {
        "pending_set": "sorted set of due times (this tree)"
        if kind == "zset"
        else "hash scan (before, benchmarks/pending_scan_baseline.py)",
        "products": n,
        "encode": args.encode,
        "stuck_postponed": len(stuck),
        "import_s": import_s,
        "enqueue_events_per_s": (n / EVENT_SIZE) / enqueue_s,
        "drain_s": drain_s,
        "wall_products_per_s": (n - len(stuck)) / drain_s,
        "redis_bytes_per_pending_entry": per_entry,
        "encoded": coverage.encoded,
        "left_pending": len(pending),
        "all_encoded_but_the_down_host": ok,
        **_decile_figures(claims),
    }
    from benchmarks.support import delete_prefix

    delete_prefix(store.r, prefix)
    delete_prefix(store.r, "{" + prefix)
    store.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=1_000_000)
    ap.add_argument("--baseline-products", type=int, default=100_000, help="the scanning claim's run (0: skip it)")
    ap.add_argument("--images", type=int, default=2000, help="distinct image files behind the products")
    ap.add_argument("--stuck-share", type=float, default=0.02, help="share of products on a host that is down")
    ap.add_argument("--drains", type=int, default=2, help="worker processes draining at once")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument(
        "--encode",
        choices=("tower", "record"),
        default="tower",
        help=f"tower: the real drain, {TOWER} encoding; record: the drain's queue steps, vectors recorded",
    )
    ap.add_argument("--store", default=None, help="a redis:// URL (default: a private redis-server)")
    ap.add_argument("--quick", action="store_true", help="20,000 products each way, 200 images")
    ap.add_argument("--json", default="benchmarks/results/bulk_load.json")
    args = ap.parse_args()
    if args.quick:
        args.products, args.baseline_products, args.images = 20_000, 20_000, 200

    import contextlib
    from types import SimpleNamespace

    from tests.support.redis_servers import redis_server

    if args.encode == "tower":
        import torch

        import clik

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        if args.encode == "tower":
            torch.manual_seed(0)
            model = clik.ClikModel(clik.get_model_config(TOWER), load_weights=False).eval()
            bundle = clik.export_bundle(model, clik.create_tokenizer(model), tmp / "bundle")
        else:  # a version to record vectors in; no tower is loaded
            bundle = SimpleNamespace(version="recorded", embed_dim=16, path=None)
        with contextlib.nullcontext(args.store) if args.store else redis_server(tmp / "redis") as url:
            runs = [run("zset", args.products, args, url, bundle, tmp)]
            if args.baseline_products:
                runs.append(run("scan", args.baseline_products, args, url, bundle, tmp))

    encoding = (
        f"image tower: {TOWER} (tiny, random weights)"
        if args.encode == "tower"
        else "no tower: vectors recorded directly (--encode record)"
    )
    print(
        f"{encoding}; {args.images} distinct images; "
        f"{args.stuck_share:.0%} of products on a host that is down; {args.drains} drains, batch {args.batch}"
    )
    print(
        "claims/s: claim calls per second of claim time (the drain's round trip), in the first and the "
        "last 10% of the products claimed"
    )
    print(
        f"{'pending set':18} {'products':>9} {'claims/s first':>14} {'claims/s last':>13} {'last/first':>10} "
        f"{'p50 ms first':>12} {'p50 ms last':>11} {'wall prod/s':>11} {'B/entry':>7} ok"
    )
    for r in runs:
        a, b = r["first_10pct"], r["last_10pct"]
        per = r["redis_bytes_per_pending_entry"]
        label = "sorted set (now)" if r["pending_set"].startswith("sorted") else "hash scan (before)"
        print(
            f"{label:18} {r['products']:>9,} {a['claims_per_s']:>14,.1f} {b['claims_per_s']:>13,.1f} "
            f"{r['last_over_first']:>10.2f} {a['claim_ms_p50']:>12.1f} {b['claim_ms_p50']:>11.1f} "
            f"{r['wall_products_per_s']:>11,.0f} {'-' if per is None else round(per):>7} "
            f"{r['all_encoded_but_the_down_host']}"
        )
    report = {
        "benchmark": "bulk_load",
        "tower": TOWER if args.encode == "tower" else None,
        "encode": args.encode,
        "images": args.images,
        "stuck_share": args.stuck_share,
        "drains": args.drains,
        "batch": args.batch,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "runs": runs,
        "target": "claims/s of the last 10% within 20% of the first 10% (last_over_first >= 0.8)",
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
