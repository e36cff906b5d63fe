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

Many exhibitions (issue 16): 2,000 exhibitions of 200 of the products, each its own topic (--topics),
precomputed at set-up as the worker would have (worker/precompute.py), with the API already up so
that it renders the default answers the precompute announces (api/announced.py); a random one per request,
at concurrency 1, 8 and 64, after a warm-up of 6,000 such requests. /healthz and the 10,000-product
exhibition also run at concurrency 64. First read after a PUT: 20 exhibitions PUT over HTTP, a real
Celery worker precomputes each (the benchmark waits until its topic entry and packed block are in
the store and an API process rendered its answer), then one GET each is timed (on a raw
kept-alive socket like the load generator's: httpx's own cost is not the server's); the same for 20 exhibitions written behind the API's back
(no precompute: what a first read cost before). Each precomputed first read is compared with a
warm read of the same exhibition after the same wait (first_reads_after_put says why). The other
targets are checked as ratios to /healthz of the same run (this box is shared; absolute times move from run to run). Because the load of
other jobs moves within a run too, /healthz, the 10,000-product exhibition and the many
exhibitions are then measured again at c=8 one after the other, --rounds times, with the CPU
the uvicorn workers spent per request (from /proc): the medians of those neighbours' ratios.

Naive approach (the original project's TaskOperator on every request): clik.Predictor over
the exhibition's images fetched from a local HTTP server (H&M packshots when
../shared/data/hm is there, generated JPEGs otherwise): fetch, decode, image tower, score.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import support  # noqa: E402
from benchmarks.support import delete_prefix  # noqa: E402
from tests.support.http_folder import serve_folder  # noqa: E402

SIZES = (50, 1_000, 10_000)
NAIVE_SIZES = (50, 1_000)
HM_IMAGES = ROOT.parent / "shared" / "data" / "hm" / "images"
TOPIC = {
    "name": "Contemporary smart trousers",
    "cat1": "Menswear",
    "cat2": "Trousers",
    "kwds": "trousers,smart,office",
    "date": "2020-09-20",
}


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


MANY = 2_000  # exhibitions of the many-exhibitions scenario
MANY_SIZE = 200  # products each, drawn from the 10,000
AFTER_PUT = 20  # exhibitions PUT over HTTP, then read once each (first read after a PUT)
ADJECTIVES = ("summer", "winter", "linen", "wool", "denim", "silk", "cotton", "leather", "smart", "casual")
NOUNS = ("shirts", "coats", "trousers", "dresses", "shoes", "bags", "jackets", "skirts", "knitwear", "hats")


def many_topic(i: int) -> dict:
    """Topic number i (--topics of them over the exhibitions: each one its own text-tower pass)."""
    return {
        "name": f"{ADJECTIVES[i % 10]} {NOUNS[(i // 10) % 10]} {i}",
        "cat1": "Fashion",
        "kwds": f"{ADJECTIVES[i % 10]},{NOUNS[(i // 10) % 10]}",
    }


def fill_many(store, n_products: int, topics: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(MANY):
        members = rng.choice(n_products, MANY_SIZE, replace=False)
        store.put_exhibition(f"many-{i}", many_topic(i % topics), [f"p{j:05d}" for j in members])
        ids.append(f"many-{i}")
    return ids


def precompute_here(store, ids: list[str]) -> float:
    """What the worker does after each PUT, done here for the set-up's exhibitions (the same code:
    worker/precompute.py), so the scenario starts from 'background work done'. Seconds taken."""
    from worker.precompute import TopicSides, precompute

    start = time.perf_counter()
    sides = TopicSides(store, device="cpu")
    for i in range(0, len(ids), 200):
        precompute(store, ids[i : i + 200], sides)
    return time.perf_counter() - start


def rendered_answers(store) -> int:
    """Default answers in the store (api/announced.py renders one per announced exhibition)."""
    return sum(1 for _ in store.r.scan_iter(match=f"{store.prefix}ans:representative:*", count=10_000))


def start_worker(prefix: str, store_url: str, queue: str, log_path: Path) -> subprocess.Popen:
    """A real Celery worker on the benchmark's queue: it precomputes exhibitions after a PUT."""
    env = {
        **os.environ,
        "CLIK_BROKER_URL": store_url,
        "CLIK_QUEUE": queue,
        "CLIK_STORE_URL": store_url,
        "CLIK_STORE_PREFIX": prefix,
        "CLIK_DEVICE": "cpu",
        "CLIK_TORCH_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "worker",
            "--pool=solo",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while "ready." not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"celery worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def first_reads_after_put(
    port: int, store, version: str, n_products: int, with_worker: bool, label: str, seed: int
) -> dict:
    """PUT AFTER_PUT new exhibitions over HTTP; with the worker, wait until each one's topic entry
    and packed block are in the store and an API process rendered its default answer (the
    background work done: worker/precompute.py, api/announced.py); then time one GET of each.

    With the worker, each first read also gets a control: the same wait (the same store polls
    for as long) and then a read of the same exhibition, warm by now. A read after an idle
    spell costs far more on this box than one of a back-to-back stream (a warm read after 0.3 s
    of idleness measured 2.2-3.2 ms, back to back 0.4 ms), so the control, not the load
    generator's c=1 stream, is the warm read the first one is compared with."""
    import httpx

    from clik import topic_cache

    rng = np.random.default_rng(seed)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": "bench"}, timeout=60)
    raw = RawClient(port)
    times, waited, controls = [], [], []
    rendered_any: list[str] = []  # exhibitions whose answer an API process rendered ahead
    vid = store.get_version(version).id
    try:
        for i in range(AFTER_PUT):
            eid, topic = f"{label}-{i}", many_topic(10_000 + seed * 100 + i)
            members = [f"p{j:05d}" for j in rng.choice(n_products, MANY_SIZE, replace=False)]
            if with_worker:
                answers_before = rendered_answers(store)
                assert http.put(f"/exhibitions/{eid}", json={"topic": topic, "product_ids": members}).status_code == 200
                start = time.perf_counter()
                key = topic_cache.entry_key(topic)

                def precomputed() -> bool:
                    _, stamp, _ = store.block_stamp(eid)
                    return (
                        store.get_topic_embedding(version, key) is not None
                        and store.r.hget(f"{store.prefix}b:{vid}:{eid}", "s") == stamp.encode()
                    )

                while not precomputed():
                    if time.perf_counter() - start > 120:
                        raise RuntimeError(f"precompute of {eid} not done in 120 s")
                    time.sleep(0.01)
                # then the answer an API process renders after the worker's notice (api/announced.py;
                # an API without it renders nothing: the read below computes, as it used to)
                rendered_at = time.perf_counter()
                limit_s = 120.0 if rendered_any else 3.0  # 3 s: the first time, to tell an API without it
                while rendered_answers(store) == answers_before and time.perf_counter() - rendered_at < limit_s:
                    time.sleep(0.01)
                if rendered_answers(store) > answers_before:
                    rendered_any.append(eid)
                waited.append(time.perf_counter() - start)
            else:  # written behind the API's back: nobody precomputes (the reads of before)
                store.put_exhibition(eid, topic, members)
            # timed with the load generator's own kind of client (raw HTTP/1.1 on a kept-alive
            # socket): httpx alone spends ~1-3 ms of Python per request on this box, which the
            # warm reads it is compared with do not pay
            start = time.perf_counter()
            status, body = raw.get(f"/exhibitions/{eid}/representative?topk=1")
            times.append((time.perf_counter() - start) * 1e3)
            assert status == 200 and json.loads(body)["items"], body
            if with_worker:  # the control: the same polls for as long, then the same read, warm now
                until = time.perf_counter() + min(waited[-1], 5.0)
                while time.perf_counter() < until:
                    precomputed()
                    rendered_answers(store)
                    time.sleep(0.01)
                start = time.perf_counter()
                status, _ = raw.get(f"/exhibitions/{eid}/representative?topk=1")
                controls.append((time.perf_counter() - start) * 1e3)
                assert status == 200
    finally:
        http.close()
        raw.close()
    out = {"exhibitions": AFTER_PUT, "p50_ms": float(np.median(times)), "max_ms": float(np.max(times))}
    if waited:
        out["warm_after_same_wait_p50_ms"] = float(np.median(controls))
        out["precompute_wait_p50_s"] = float(np.median(waited))
        out["answers_rendered_ahead"] = len(rendered_any)
    return out


# -- the load generator --------------------------------------------------------------------------
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)


class RawClient:
    """One kept-alive connection, the same hand-written HTTP/1.1 as the load generator, blocking."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def get(self, path: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        length = int(_LENGTH.search(head).group(1))
        while len(self.buffer) < length:
            self.buffer += self.sock.recv(65536)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(head[9:12]), body

    def close(self) -> None:
        self.sock.close()


async def _connection(
    port: int,
    requests: list[bytes],
    remaining: list[int],
    latencies: list[float],
    errors: list[str],
    rng: np.random.Generator,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while remaining[0] > 0:
            remaining[0] -= 1
            request = requests[int(rng.integers(len(requests)))] if len(requests) > 1 else requests[0]
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(_LENGTH.search(head).group(1)))
            latencies.append(time.perf_counter() - start)
            if head[9:12] != b"200":
                errors.append(head[:40].decode(errors="replace"))
    finally:
        writer.close()


def server_cpu_s(supervisor_pid: int) -> float:
    """CPU seconds (user + system) used so far by the children of the uvicorn supervisor (its
    worker processes), from /proc: what the server spent, whatever else shares the cores."""
    ticks = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == supervisor_pid:  # ppid; utime and stime are fields 14 and 15 of stat
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def load(
    port: int,
    paths: str | list[str],
    requests: int,
    concurrency: int,
    seed: int = 0,
    allow_errors: bool = False,
    cpu: Callable[[], float] | None = None,
) -> dict:
    """GET `paths` (one, or a random one of the list per request) `requests` times over
    `concurrency` keep-alive connections. `cpu`: the server's CPU seconds so far (server_cpu_s),
    read before and after to give its CPU per request."""
    paths = [paths] if isinstance(paths, str) else paths
    wire = [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() for p in paths]
    latencies: list[float] = []
    errors: list[str] = []

    async def main() -> float:
        remaining = [requests]
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _connection(port, wire, remaining, latencies, errors, np.random.default_rng([seed, i]))
                for i in range(concurrency)
            )
        )
        return time.perf_counter() - start

    cpu_before = cpu() if cpu else 0.0
    elapsed = asyncio.run(main())
    if errors and not allow_errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    ms = np.array(latencies) * 1e3
    row = {
        "requests": requests,
        "concurrency": concurrency,
        "errors": len(errors),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "rps": requests / elapsed,
    }
    if cpu:
        row["server_cpu_ms_per_request"] = (cpu() - cpu_before) * 1e3 / requests
    return row


def interleaved(
    port: int, scenarios: dict[str, str | list[str]], rounds: int, requests: int, cpu: Callable[[], float]
) -> dict:
    """The c=8 scenarios again, one after the other, `rounds` times: on a box whose load moves
    from minute to minute, ratios of neighbours are steadier than ratios of rows minutes apart.
    Medians over the rounds of each scenario's ratio to /healthz of its own round."""
    per_round = []
    for r in range(rounds):
        row = {
            name: load(port, paths, requests, 8, seed=1000 + r, allow_errors=True, cpu=cpu)
            for name, paths in scenarios.items()
        }
        per_round.append(row)
        health = row["healthz"]
        print(
            f"round {r}: "
            + "; ".join(
                f"{name} {v['rps'] / health['rps']:.0%} req/s, p99 {v['p99_ms'] / health['p99_ms']:.2f}x, "
                f"cpu {v['server_cpu_ms_per_request'] / health['server_cpu_ms_per_request']:.2f}x "
                f"({v['server_cpu_ms_per_request']:.2f} ms/req)"
                for name, v in row.items()
                if name != "healthz"
            ),
            flush=True,
        )
    medians = {}
    for name in scenarios:
        if name == "healthz":
            continue
        medians[name] = {
            key: float(np.median([row[name][field] / row["healthz"][field] for row in per_round]))
            for key, field in (
                ("rps_ratio", "rps"),
                ("p99_ratio", "p99_ms"),
                ("cpu_ratio", "server_cpu_ms_per_request"),
            )
        }
    return {"rounds": per_round, "medians": medians}


# -- the API server --------------------------------------------------------------------------------
def start_api(
    port: int, workers: int, prefix: str, store_url: str, log_path: Path, queue: str = "clik"
) -> subprocess.Popen:
    env = {
        **os.environ,
        "CLIK_STORE_URL": store_url,
        "CLIK_STORE_PREFIX": prefix,
        "CLIK_BROKER_URL": store_url,
        "CLIK_QUEUE": queue,
        "CLIK_API_KEYS": '["bench"]',
        "CLIK_TORCH_THREADS": "1",
        "CLIK_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    proc = support.start_api(env, port, workers, log_path, extra_args=("--timeout-worker-healthcheck", "300"))
    support.wait_ready(f"http://127.0.0.1:{port}", proc, timeout=600, log_path=log_path)
    return proc


stop = support.stop


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
            out[size] = {
                "requests": len(times),
                "concurrency": 1,
                "p50_ms": float(np.median(times)),
                "p99_ms": float(np.percentile(times, 99)),
                "rps": 1e3 / float(np.mean(times)),
                "images": "hm" if root == HM_IMAGES else "generated",
            }
    finally:
        server.shutdown()
        server.server_close()
    return out


def targets(results: dict) -> dict[str, tuple[str, bool | None]]:
    """The issue's targets, as ratios to /healthz measured in the same run."""
    health = {r["concurrency"]: r for r in results["baseline"]}
    many = {r["concurrency"]: r for r in results["many"]}
    big = {r["concurrency"]: r for r in results["api"] if r["products"] == max(SIZES)}
    out: dict[str, tuple[str, bool | None]] = {}
    for name, rows, share in (("many exhibitions", many, 0.70), (f"{max(SIZES):,}-product exhibition", big, 0.60)):
        rps = rows[8]["rps"] / health[8]["rps"]
        p99 = rows[8]["p99_ms"] / health[8]["p99_ms"]
        out[f"{name} c=8 throughput >= {share:.0%} of /healthz"] = (f"{rps:.0%}", rps >= share)
        out[f"{name} c=8 p99 <= 1.5x /healthz p99"] = (f"{p99:.2f}x", p99 <= 1.5)
        out[f"{name} c=64 no errors"] = (str(rows[64]["errors"]), rows[64]["errors"] == 0)
    after = results["after_put"]["precomputed"]
    first = after["p50_ms"] / after["warm_after_same_wait_p50_ms"]
    out["first read after PUT (precomputed) <= 2x a warm read after the same wait"] = (f"{first:.2f}x", first <= 2.0)
    stream = after["p50_ms"] / many[1]["p50_ms"]
    out["(not a target) first read after PUT / a back-to-back warm c=1 read, p50"] = (f"{stream:.2f}x", None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--requests", type=int, default=3000, help="requests per (size, concurrency)")
    parser.add_argument("--bundle", type=Path, help="an exported bundle (default: export the pretrained one)")
    parser.add_argument("--store-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--naive-requests", type=int, nargs=2, default=(3, 1), metavar=("AT50", "AT1000"))
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--topics",
        type=int,
        default=MANY,
        help="distinct topics over the 2,000 exhibitions (fewer: a quicker set-up on a slow box)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved c=8 rounds of /healthz, the 10,000 and the many exhibitions"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "api_load.json")
    args = parser.parse_args()

    from indexer.config import open_store

    tmp = Path(tempfile.mkdtemp(prefix="clik-api-bench-"))
    prefix = f"clik-bench-api-{uuid.uuid4().hex[:8]}:"
    store = open_store(args.store_url, prefix=prefix)
    proc = worker = None
    queue = ""
    results: dict = {
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "baseline": [],
        "api": [],
        "naive": [],
    }
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

        queue = f"clik-bench-{uuid.uuid4().hex[:8]}"
        worker = start_worker(prefix, args.store_url, queue, tmp / "worker.log")
        port = free_port()
        proc = start_api(port, args.workers, prefix, args.store_url, tmp / "api.log", queue)
        import httpx

        # the API is up first, so that it hears the precompute's notices as it would in service
        many = fill_many(store, max(SIZES), args.topics)
        before = rendered_answers(store)
        print(
            f"{MANY} exhibitions of {MANY_SIZE} products; precomputed in {precompute_here(store, many):.1f}s",
            flush=True,
        )
        start, last = time.perf_counter(), (before, time.perf_counter())
        while rendered_answers(store) < before + MANY and time.perf_counter() - last[1] < 10:
            if rendered_answers(store) > last[0]:  # still rendering (an API without it: none after 10 s)
                last = (rendered_answers(store), time.perf_counter())
            time.sleep(0.5)
        print(
            f"{rendered_answers(store) - before} default answers rendered by the API after the notices "
            f"({time.perf_counter() - start:.1f}s more)",
            flush=True,
        )

        check = httpx.get(f"http://127.0.0.1:{port}/exhibitions/ex-50/representative").json()
        assert check["items"] and check["model_version"] == info.version, check

        def row_line(name: str, row: dict) -> str:
            return (
                f"{name:<22} c={row['concurrency']:<3} p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
                f"{row['rps']:7.0f} req/s  errors {row['errors']}"
            )

        # the floor on this box: the same client and server doing no work at all
        load(port, "/healthz", 400, 8)
        for concurrency in (1, 8, 64):
            row = {"route": "/healthz", **load(port, "/healthz", args.requests, concurrency, allow_errors=True)}
            results["baseline"].append(row)
            print(row_line("healthz", row), flush=True)
        for size in SIZES:
            path = f"/exhibitions/ex-{size}/representative?topk=1"
            load(port, path, 400, 8)  # warm-up: every worker process loads its blocks and the query
            for concurrency in (1, 8) if size != max(SIZES) else (1, 8, 64):
                row = {"products": size, **load(port, path, args.requests, concurrency, allow_errors=True)}
                results["api"].append(row)
                print(row_line(f"api {size:>6} products", row), flush=True)
        paths = [f"/exhibitions/{eid}/representative?topk=1" for eid in many]
        load(port, paths, 3 * MANY, 8, seed=99)  # warm-up: each process sees most exhibitions
        results["many"] = []
        for concurrency in (1, 8, 64):
            row = {
                "exhibitions": MANY,
                "products": MANY_SIZE,
                **load(port, paths, args.requests, concurrency, seed=concurrency, allow_errors=True),
            }
            results["many"].append(row)
            print(row_line(f"many {MANY}x{MANY_SIZE}", row), flush=True)
        cpu = functools.partial(server_cpu_s, proc.pid)
        results["interleaved"] = interleaved(
            port,
            {
                "healthz": "/healthz",
                f"{max(SIZES):,}-product exhibition": f"/exhibitions/ex-{max(SIZES)}/representative?topk=1",
                "many exhibitions": paths,
            },
            args.rounds,
            args.requests,
            cpu,
        )
        results["after_put"] = {
            "precomputed": first_reads_after_put(port, store, info.version, max(SIZES), True, "put", 1),
            "not_precomputed": first_reads_after_put(port, store, info.version, max(SIZES), False, "raw", 2),
        }
        for name, row in results["after_put"].items():
            control = row.get("warm_after_same_wait_p50_ms")
            print(
                f"first read after PUT ({name}): p50 {row['p50_ms']:.2f} ms, max {row['max_ms']:.2f} ms"
                + (f"; warm read after the same wait: p50 {control:.2f} ms" if control is not None else ""),
                flush=True,
            )
        warm_c1 = load(port, paths, 400, 1, seed=7)
        results["many_warm_c1_again"] = warm_c1
        print(row_line("many (warm, again)", warm_c1), flush=True)
        stop(worker)
        stop(proc)
        proc = None

        if not args.skip_naive:
            naive = bench_naive(Path(bundle_dir), tmp, dict(zip(NAIVE_SIZES, args.naive_requests)))
            for size, row in naive.items():
                results["naive"].append({"products": size, **row})
                print(
                    f"naive {size:>6} products  c=1  p50 {row['p50_ms']:9.0f} ms  ({row['requests']} requests, "
                    f"{row['images']} images)",
                    flush=True,
                )
    finally:
        if proc is not None:
            stop(proc)
        if worker is not None and worker.poll() is None:
            stop(worker)
        import redis

        client = redis.Redis.from_url(args.store_url)
        delete_prefix(client, prefix)
        if queue:
            for key in client.scan_iter(match=f"*{queue}*", count=1000):  # the broker's lists of the queue
                client.delete(key)
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)

    results["load_after"] = os.getloadavg()
    print(
        f"load average before {results['load_before'][0]:.2f}, after {results['load_after'][0]:.2f} "
        f"(other processes share these {os.cpu_count()} cores)"
    )
    api_c1 = {r["products"]: r for r in results["api"] if r["concurrency"] == 1}
    ratios = {
        size: results_row["p50_ms"] / api_c1[size]["p50_ms"]
        for size, results_row in ((r["products"], r) for r in results["naive"])
    }
    results["naive_over_api_p50"] = ratios
    print()
    print("| products | concurrency | API p50 ms | API p99 ms | API req/s | naive p50 ms | naive / API |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    naive_by_size = {r["products"]: r for r in results["naive"]}
    for r in results["api"]:
        n = naive_by_size.get(r["products"]) if r["concurrency"] == 1 else None
        naive_cell = f"{n['p50_ms']:,.0f}" if n else ""
        ratio_cell = f"{ratios[r['products']]:,.0f}x" if n else ""
        print(
            f"| {r['products']:,} | {r['concurrency']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['rps']:,.0f} | {naive_cell} | {ratio_cell} |"
        )
    results["targets"] = targets(results)
    print()
    print("| target (issue 16) | measured | met |")
    print("| --- | ---: | :---: |")
    for name, (value, ok) in results["targets"].items():
        print(f"| {name} | {value} | {'-' if ok is None else 'yes' if ok else 'NO'} |")
    print()
    print(f"Interleaved c=8, median of {args.rounds} rounds, ratio to /healthz of the same round:")
    print("| scenario | req/s | p99 | server CPU per request |")
    print("| --- | ---: | ---: | ---: |")
    for name, m in results["interleaved"]["medians"].items():
        print(f"| {name} | {m['rps_ratio']:.0%} | {m['p99_ratio']:.2f}x | {m['cpu_ratio']:.2f}x |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
