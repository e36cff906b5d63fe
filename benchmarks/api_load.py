"""Load benchmark of the API's representative route, side by side with the naive approach.

    python benchmarks/api_load.py [--workers 2] [--requests 3000] [--bundle DIR] [--json PATH]

API: uvicorn (`--factory api.app:app_from_env`, `--workers N` processes) on the Redis store
(db 14, unique prefix, deleted afterwards). 10,000 products get random unit vectors written
directly (what the worker would have written); exhibitions of 50, 1,000 and 10,000 of them.
The text side is a real bundle (default: the pretrained clik-minilm-lite0 exported to a temp
folder). GET /exhibitions/{id}/representative?topk=1 is timed over HTTP at concurrency 1 and 8
by a small asyncio client holding keep-alive connections (hand-written HTTP/1.1, so the client
spends little of the 2 cores it shares with the server). Warm-up requests first: a warm
ranking means cached topic query and decoded block, which is the steady state of a product page.

Naive approach (the original project's TaskOperator on every request): clik.Predictor over
the exhibition's images fetched from a local HTTP server (H&M packshots when
../shared/data/hm is there, generated JPEGs otherwise): fetch, decode, image tower, score.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.http_folder import serve_folder  # noqa: E402

SIZES = (50, 1_000, 10_000)
NAIVE_SIZES = (50, 1_000)
HM_IMAGES = ROOT.parent / "shared" / "data" / "hm" / "images"
TOPIC = {"name": "Contemporary smart trousers", "cat1": "Menswear", "cat2": "Trousers",
         "kwds": "trousers,smart,office", "date": "2020-09-20"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export_default_bundle(out: Path):
    import torch

    import clik

    torch.manual_seed(0)
    model = clik.create_model("clik-minilm-lite0").eval()
    return clik.export_bundle(model, clik.create_tokenizer(model), out)


def fill_store(store, version, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    store.import_products([(f"p{i:05d}", f"http://img.example/{i}.jpg", f"h{i}") for i in range(n)])
    for start in range(0, n, 2000):
        vecs = rng.standard_normal((min(2000, n - start), version.dim), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        store.put_vectors(version.name, [(f"h{start + i}", v) for i, v in enumerate(vecs)])
    for size in SIZES:
        store.put_exhibition(f"ex-{size}", TOPIC, [f"p{i:05d}" for i in range(size)])


# -- the load generator --------------------------------------------------------------------------
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)


async def _connection(port: int, request: bytes, remaining: list[int], latencies: list[float],
                      errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while remaining[0] > 0:
            remaining[0] -= 1
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(_LENGTH.search(head).group(1)))
            latencies.append(time.perf_counter() - start)
            if head[9:12] != b"200":
                errors.append(head[:40].decode(errors="replace"))
    finally:
        writer.close()


def load(port: int, path: str, requests: int, concurrency: int) -> dict:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    latencies: list[float] = []
    errors: list[str] = []

    async def main() -> float:
        remaining = [requests]
        start = time.perf_counter()
        await asyncio.gather(*(_connection(port, request, remaining, latencies, errors)
                               for _ in range(concurrency)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    ms = np.array(latencies) * 1e3
    return {"requests": requests, "concurrency": concurrency,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "rps": requests / elapsed}


# -- the API server --------------------------------------------------------------------------------
def start_api(port: int, workers: int, prefix: str, store_url: str, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "CLIK_STORE_URL": store_url, "CLIK_STORE_PREFIX": prefix,
           "CLIK_API_KEYS": '["bench"]', "CLIK_TORCH_THREADS": "1", "CLIK_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.app:app_from_env", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    import httpx

    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"API did not become ready:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# -- the naive approach ---------------------------------------------------------------------------
def naive_images(tmp: Path, n: int) -> tuple[Path, list[str]]:
    if HM_IMAGES.is_dir():
        names = sorted(os.listdir(HM_IMAGES))[:n]
        return HM_IMAGES, names
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (336, 224, 3), dtype=np.uint8)).save(tmp / f"{i}.jpg", quality=85)
    return tmp, [f"{i}.jpg" for i in range(n)]


def bench_naive(bundle_dir: Path, tmp: Path, requests: dict[int, int]) -> dict[int, dict]:
    import torch

    from clik import Predictor
    from clik.image_source import FetchLimits

    torch.set_num_threads(2)  # the whole machine: the fairest case for the naive approach
    root, names = naive_images(tmp, max(NAIVE_SIZES))
    server = serve_folder(root)
    port = server.server_address[1]
    predictor = Predictor.load(bundle_dir, device="cpu", limits=FetchLimits(allow_private_hosts=True))
    out = {}
    try:
        urls = [f"http://127.0.0.1:{port}/{name}" for name in names]
        predictor(TOPIC, urls[:4], topk=1)  # warm-up
        for size in NAIVE_SIZES:
            times = []
            for _ in range(requests[size]):
                start = time.perf_counter()
                result = predictor(TOPIC, urls[:size], topk=1)
                times.append((time.perf_counter() - start) * 1e3)
                assert len(result.indices) == 1 and not result.errors, result.errors
            out[size] = {"requests": len(times), "concurrency": 1, "p50_ms": float(np.median(times)),
                         "p99_ms": float(np.percentile(times, 99)), "rps": 1e3 / float(np.mean(times)),
                         "images": "hm" if root == HM_IMAGES else "generated"}
    finally:
        server.shutdown()
        server.server_close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--requests", type=int, default=3000, help="requests per (size, concurrency)")
    parser.add_argument("--bundle", type=Path, help="an exported bundle (default: export the pretrained one)")
    parser.add_argument("--store-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--naive-requests", type=int, nargs=2, default=(3, 1), metavar=("AT50", "AT1000"))
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "api_load.json")
    args = parser.parse_args()

    from indexer.config import open_store

    tmp = Path(tempfile.mkdtemp(prefix="clik-api-bench-"))
    prefix = f"clik-bench-api-{uuid.uuid4().hex[:8]}:"
    store = open_store(args.store_url, prefix=prefix)
    proc = None
    results: dict = {"workers": args.workers, "cpus": os.cpu_count(), "load_before": os.getloadavg(),
                     "baseline": [], "api": [], "naive": []}
    try:
        info = export_default_bundle(tmp / "bundle") if args.bundle is None else None
        bundle_dir = args.bundle or info.path
        from clik.checkpoint import read_bundle_info

        info = read_bundle_info(bundle_dir)
        version = store.register_version(info.version, info.embed_dim, bundle_uri=str(Path(bundle_dir).resolve()))
        store.activate(info.version)
        t = time.perf_counter()
        fill_store(store, version, max(SIZES))
        print(f"store filled with {max(SIZES)} vectors in {time.perf_counter() - t:.1f}s", flush=True)

        port = free_port()
        proc = start_api(port, args.workers, prefix, args.store_url, tmp / "api.log")
        import httpx

        check = httpx.get(f"http://127.0.0.1:{port}/exhibitions/ex-50/representative").json()
        assert check["items"] and check["model_version"] == info.version, check
        # the floor on this box: the same client and server doing no work at all
        load(port, "/healthz", 400, 8)
        for concurrency in (1, 8):
            row = {"route": "/healthz", **load(port, "/healthz", args.requests, concurrency)}
            results["baseline"].append(row)
            print(f"healthz          c={concurrency}  p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
                  f"{row['rps']:7.0f} req/s", flush=True)
        for size in SIZES:
            path = f"/exhibitions/ex-{size}/representative?topk=1"
            load(port, path, 400, 8)  # warm-up: every worker process loads its blocks and the query
            for concurrency in (1, 8):
                row = {"products": size, **load(port, path, args.requests, concurrency)}
                results["api"].append(row)
                print(f"api   {size:>6} products  c={concurrency}  p50 {row['p50_ms']:6.2f} ms  "
                      f"p99 {row['p99_ms']:6.2f} ms  {row['rps']:7.0f} req/s", flush=True)
        stop(proc)
        proc = None

        if not args.skip_naive:
            naive = bench_naive(Path(bundle_dir), tmp, dict(zip(NAIVE_SIZES, args.naive_requests)))
            for size, row in naive.items():
                results["naive"].append({"products": size, **row})
                print(f"naive {size:>6} products  c=1  p50 {row['p50_ms']:9.0f} ms  ({row['requests']} requests, "
                      f"{row['images']} images)", flush=True)
    finally:
        if proc is not None:
            stop(proc)
        import redis

        client = redis.Redis.from_url(args.store_url)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)

    results["load_after"] = os.getloadavg()
    print(f"load average before {results['load_before'][0]:.2f}, after {results['load_after'][0]:.2f} "
          f"(other processes share these {os.cpu_count()} cores)")
    api_c1 = {r["products"]: r for r in results["api"] if r["concurrency"] == 1}
    ratios = {size: results_row["p50_ms"] / api_c1[size]["p50_ms"]
              for size, results_row in ((r["products"], r) for r in results["naive"])}
    results["naive_over_api_p50"] = ratios
    print()
    print("| products | concurrency | API p50 ms | API p99 ms | API req/s | naive p50 ms | naive / API |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    naive_by_size = {r["products"]: r for r in results["naive"]}
    for r in results["api"]:
        n = naive_by_size.get(r["products"]) if r["concurrency"] == 1 else None
        naive_cell = f"{n['p50_ms']:,.0f}" if n else ""
        ratio_cell = f"{ratios[r['products']]:,.0f}x" if n else ""
        print(f"| {r['products']:,} | {r['concurrency']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['rps']:,.0f} | {naive_cell} | {ratio_cell} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
