"""Ingestion throughput: product events -> images fetched from a local HTTP server -> vectors in
Redis, through one real Celery worker process (solo pool) on this machine.

    python benchmarks/ingest.py --images 400 --json benchmarks/results/ingest.json

The bundle is the real default model (clik-minilm-lite0: EfficientNet-Lite0 image tower),
exported into a temp folder; the images are real H&M packshots (--data, default
../shared/data/hm). Each configuration (batch size x decode threads, and a baseline without
the pending-set grouping) gets a fresh worker and a fresh store namespace, so nothing is reused;
the worker is warmed up on other images first. One event (task) per product, as the API sends
them; the clock runs from the first event to the last product encoded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from indexer.config import RedisStoreConfig  # noqa: E402
from indexer.records import ProductStatus  # noqa: E402
from indexer.redis_store import RedisStore  # noqa: E402
from tests.support.http_folder import serve_folder  # noqa: E402

EAGER = {"image_backend": "torch"}
CONFIGS = [  # (label, settings)
    ("no grouping, batch 1 per event", {"group_pending": "false", "batch_size": "16", "decode_threads": "1", **EAGER}),
    ("batch 8, 1 decode thread", {"batch_size": "8", "decode_threads": "1", **EAGER}),
    ("batch 16, 1 decode thread", {"batch_size": "16", "decode_threads": "1", **EAGER}),
    ("batch 16, 4 decode threads", {"batch_size": "16", "decode_threads": "4", **EAGER}),
    ("batch 32, 4 decode threads", {"batch_size": "32", "decode_threads": "4", **EAGER}),
    # torch's intra-op threads: one per core by default; on a busy shared machine fewer may win.
    (
        "no grouping, 1 torch thread",
        {"group_pending": "false", "batch_size": "16", "decode_threads": "1", "torch_threads": "1", **EAGER},
    ),
    (
        "batch 16, 1 decode thread, 1 torch thread",
        {"batch_size": "16", "decode_threads": "1", "torch_threads": "1", **EAGER},
    ),
    # The tower under ONNX Runtime (the CPU default, image_backend auto), side by side with eager (7 vs 2).
    ("batch 16, 1 decode thread, onnx", {"batch_size": "16", "decode_threads": "1", "image_backend": "onnx"}),
    ("batch 16, 2 decode threads, onnx", {"batch_size": "16", "decode_threads": "2", "image_backend": "onnx"}),
    ("batch 32, 2 decode threads, onnx", {"batch_size": "32", "decode_threads": "2", "image_backend": "onnx"}),
    # ONNX Runtime on both cores (decoding overlaps the tower's waits), and the worker's defaults.
    (
        "batch 16, 2 decode threads, onnx on 2 threads",
        {"batch_size": "16", "decode_threads": "2", "image_backend": "onnx", "torch_threads": "2"},
    ),
    ("worker defaults (auto: onnx)", {}),
]


def export_default_bundle(out: Path):
    import clik

    model = clik.create_model("clik-minilm-lite0").eval()
    return clik.export_bundle(model, clik.create_tokenizer(model), out)


def start_worker(settings: dict[str, str], log_path: Path) -> subprocess.Popen:
    env = {**os.environ, **{f"CLIK_{k.upper()}": v for k, v in settings.items()}}
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
            "--concurrency=1",
            "-Q",
            settings["queue"],
            "-n",
            f"{settings['queue']}@%h",
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
    log.close()
    deadline = time.monotonic() + 120
    while "ready." not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def run_events(client, store: RedisStore, queue: str, ids: list[str], timeout: float) -> float:
    start = time.perf_counter()
    for pid in ids:
        client.send_task("clik.encode_products", args=[[pid]], queue=queue, ignore_result=True)
    deadline = time.monotonic() + timeout
    left = list(ids)
    while left:
        left = [p for p in left if store.get_product(p).status is ProductStatus.PENDING]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(left)} products still pending after {timeout}s")
        if left:
            time.sleep(0.05)
    return time.perf_counter() - start


def measure(
    label: str, extra: dict[str, str], bundle, images: list[str], warmup: list[str], base_url: str, args, tmp: Path
) -> dict:
    from worker.app import make_app
    from worker.settings import WorkerSettings

    token = uuid.uuid4().hex[:8]
    queue, prefix = f"clik-bench-{token}", f"clik-bench-{token}:"
    settings = {
        "broker_url": args.broker,
        "store_url": args.store,
        "store_prefix": prefix,
        "queue": queue,
        "device": args.device,
        "allow_private_hosts": "true",
        "onnx_cache_dir": str(tmp / "onnx"),
        **extra,
    }
    if args.torch_threads and "torch_threads" not in extra:
        settings["torch_threads"] = str(args.torch_threads)
    store = RedisStore(RedisStoreConfig(url=args.store, prefix=prefix))
    store.register_version(bundle.version, bundle.embed_dim, bundle_uri=str(bundle.path))
    store.activate(bundle.version)
    for name in warmup + images:
        store.put_product(name, f"{base_url}/{name}")
    client = make_app(WorkerSettings(broker_url=args.broker, queue=queue, _env_file=None))
    proc = None
    try:
        proc = start_worker(settings, tmp / f"worker-{token}.log")
        run_events(client, store, queue, warmup, timeout=600)  # loads the tower, warms the caches
        seconds = run_events(client, store, queue, images, timeout=1800)
        failed = [p for p in images if store.get_product(p).status is ProductStatus.FAILED]
        stats = {
            k.decode(): int(v) for k, v in redis.Redis.from_url(args.store).hgetall(prefix + "ingest:stats").items()
        }
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
        client.close()
        store.close()
        r = redis.Redis.from_url(args.store)
        for key in r.scan_iter(match=prefix + "*", count=1000):
            r.delete(key)
        b = redis.Redis.from_url(args.broker)
        for key in b.scan_iter(match=f"*{queue}*", count=1000):
            b.delete(key)
    row = {
        "config": label,
        **extra,
        "images": len(images),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(images) / seconds, 1),
        "failed": len(failed),
        "forward_passes": stats.get("batches"),
    }
    print(
        f"{label:<42} {row['images_per_s']:>8.1f} img/s   {seconds:6.1f} s   "
        f"passes {row['forward_passes']}   failed {len(failed)}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hm")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--only",
        nargs="*",
        type=int,
        default=None,
        help="run only these configurations (indices into the table, from 0)",
    )
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--store", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "ingest.json")
    args = parser.parse_args()

    folder = args.data / "images"
    names = sorted(p.name for p in folder.glob("*.jpg"))
    if len(names) < args.images + args.warmup:
        sys.exit(f"need {args.images + args.warmup} images in {folder}, found {len(names)}")
    warmup, images = names[: args.warmup], names[args.warmup : args.warmup + args.images]
    server = serve_folder(folder)
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        bundle = export_default_bundle(Path(tmp) / "bundle")
        print(
            f"{len(images)} H&M images over HTTP -> Redis, one solo worker, {args.device}, "
            f"{os.cpu_count()} CPUs, bundle {bundle.version[:12]}",
            flush=True,
        )
        load_before = os.getloadavg()
        configs = [CONFIGS[i] for i in args.only] if args.only else CONFIGS
        runs: dict[str, list[dict]] = {label: [] for label, _ in configs}
        # Rounds interleave the configurations, so a change of load on a shared machine hits all.
        for _ in range(args.rounds):
            for label, extra in configs:
                runs[label].append(measure(label, extra, bundle, images, warmup, base_url, args, Path(tmp)))
        load_after = os.getloadavg()
    server.shutdown()
    rows = []
    print(f"\nmedian of {args.rounds} rounds (load average {load_before[0]:.1f} -> {load_after[0]:.1f}):")
    for label, extra in configs:
        rates = sorted(r["images_per_s"] for r in runs[label])
        median = statistics.median(rates)
        rows.append(
            {
                "config": label,
                **extra,
                "images_per_s": median,
                "runs": rates,
                "forward_passes": runs[label][-1]["forward_passes"],
                "failed": sum(r["failed"] for r in runs[label]),
            }
        )
        print(f"{label:<42} {median:>8.1f} img/s   runs {rates}")
    import torch

    result = {
        "benchmark": "ingest",
        "device": args.device,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "images": len(images),
        "rounds": args.rounds,
        "load_average": [load_before[0], load_after[0]],
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
