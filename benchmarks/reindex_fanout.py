"""Re-index time with 1 and 2 Celery workers on one queue, side by side in one run.

N real H&M photos served by a local HTTP server, already encoded with an old version (random
vectors stand in: only the new version is timed); `clik.reindex` for a new version (the real
default bundle, EfficientNet-Lite0, CPU, 1 torch thread per worker), timed from sending the task
to the switch. Rounds alternate 1, 2, 1, 2 workers so machine noise falls on both.

    python benchmarks/reindex_fanout.py --images 240 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import redis  # noqa: E402

from clik.image_source import content_hash  # noqa: E402
from indexer.config import RedisStoreConfig  # noqa: E402
from indexer.redis_store import RedisStore  # noqa: E402
from tests.support.http_folder import serve_folder  # noqa: E402
from tests.support.worker_harness import CeleryWorker  # noqa: E402
from worker.reindex import ReindexProgress  # noqa: E402

STORE_URL, BROKER_URL = "redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/13"


def bundle(seed: int, out: Path):
    import torch

    import clik

    torch.manual_seed(seed)  # two different projections: two versions
    model = clik.create_model("clik-minilm-lite0").eval()
    return clik.export_bundle(model, clik.create_tokenizer(model), out)


def one_round(n_workers: int, files: list[Path], base_url: str, old, new, chunk: int) -> dict:
    from worker.app import make_app
    from worker.settings import WorkerSettings

    token = uuid.uuid4().hex[:8]
    queue, prefix = f"clik-bench-{token}", f"clik-bench-{token}:"
    store = RedisStore(RedisStoreConfig(url=STORE_URL, prefix=prefix))
    store.register_version(old.version, old.embed_dim, bundle_uri=str(old.path))
    store.activate(old.version)
    store.register_version(new.version, new.embed_dim, bundle_uri=str(new.path))
    rng = np.random.default_rng(0)
    for f in files:
        digest = content_hash(f.read_bytes())
        store.put_product(f.stem, f"{base_url}/{f.name}")
        store.mark_encoded(f.stem, digest)
        store.put_vectors(old.version, [(digest, rng.standard_normal(old.embed_dim))])
    settings = {
        "broker_url": BROKER_URL,
        "queue": queue,
        "store_url": STORE_URL,
        "store_prefix": prefix,
        "device": "cpu",
        "torch_threads": "1",
        "decode_threads": "1",
        "allow_private_hosts": "true",
        "reindex_chunk_size": str(chunk),
        "reindex_check_s": "0.5",
        "reindex_drop_grace_s": "0",
    }
    workers = [CeleryWorker(settings, queue, Path(tempfile.mkdtemp())) for _ in range(n_workers)]
    client = make_app(WorkerSettings(**settings, _env_file=None))
    try:
        for i, w in enumerate(workers):
            w.starts = i * 10  # distinct node names
            w.start()
        started = time.perf_counter()  # includes each worker loading the bundle on its first chunk
        client.send_task("clik.reindex", args=[new.version], queue=queue, ignore_result=True)
        while True:
            progress = ReindexProgress.load(store, new.version)
            if progress is not None and progress.state in ("switched", "done"):
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        return {
            "workers": n_workers,
            "images": len(files),
            "seconds": round(seconds, 2),
            "images_per_s": round(len(files) / seconds, 1),
            "per_worker": progress.workers,
            "done": progress.done,
            "load_average": round(os.getloadavg()[0], 2),
        }
    finally:
        for w in workers:
            w.stop()
        client.close()
        store.close()
        for url, pattern in ((STORE_URL, prefix + "*"), (BROKER_URL, f"*{queue}*")):
            r = redis.Redis.from_url(url)
            for key in r.scan_iter(pattern, count=1000):
                r.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=32, help="images per chunk task")
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "hm" / "images")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "reindex_fanout.json")
    args = parser.parse_args()

    files = sorted(args.photos.glob("*.jpg"))[: args.images]
    if not files:
        sys.exit(f"no photos in {args.photos}")
    tmp = Path(tempfile.mkdtemp())
    old, new = bundle(0, tmp / "old"), bundle(1, tmp / "new")
    server = serve_folder(args.photos)
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    results = []
    for _ in range(args.rounds):
        for n_workers in (1, 2):
            results.append(one_round(n_workers, files, base_url, old, new, args.chunk))
            print(results[-1], flush=True)
    summary = {}
    for n in (1, 2):
        summary[n] = round(statistics.median(r["images_per_s"] for r in results if r["workers"] == n), 1)
    print(f"\nmedian images/s: 1 worker {summary[1]}, 2 workers {summary[2]}, ratio {summary[2] / summary[1]:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"rounds": results, "median_images_per_s": summary, "ratio_2_over_1": round(summary[2] / summary[1], 2)},
            indent=1,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
