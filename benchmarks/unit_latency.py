"""`representative?unit=` next to plain `representative`, side by side over HTTP.

    python benchmarks/unit_latency.py [--requests 500] [--json PATH]

A tiny random-weight bundle, 50 products with random vectors on a Redis store, uvicorn (one
worker, subprocess); an experiment whose one arm is the model, so both routes rank the same
way; requests interleaved (plain, unit, plain, ...) from one client. Target: unit within 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.support import delete_prefix  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    import clik
    from indexer.config import open_store

    torch.manual_seed(0)
    model = clik.ClikModel(clik.get_model_config("clik-tiny-test"), load_weights=False).eval()
    info = clik.export_bundle(model, clik.create_tokenizer(model), Path(tempfile.mkdtemp()) / "tiny")
    prefix = f"clik-bench-unit-{uuid.uuid4().hex[:8]}:"
    store = open_store(args.redis, prefix=prefix)
    rng = np.random.default_rng(0)
    store.register_version(info.version, info.embed_dim, bundle_uri=str(info.path))
    store.activate(info.version)
    store.import_products([(f"p{i}", f"https://img.example/{i}.jpg", f"h{i}") for i in range(50)])
    store.put_vectors(info.version, [(f"h{i}", rng.standard_normal(info.embed_dim)) for i in range(50)])
    store.put_exhibition("e", {"name": "linen shirts"}, [f"p{i}" for i in range(50)])
    port = 18900 + os.getpid() % 90
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CLIK_STORE_URL": args.redis,
        "CLIK_STORE_PREFIX": prefix,
        "CLIK_API_KEYS": json.dumps(["k"]),
        "CLIK_DEVICE": "cpu",
    }
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "api.app:app_from_env",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": "k"}, timeout=60)
        deadline = time.monotonic() + 600
        while True:
            try:
                if http.get("/exhibitions/e/representative").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("API not up")
            time.sleep(0.5)
        http.put(
            "/experiments/lat", json={"exhibitions": ["e"], "arms": [{"name": "clik", "share": 1, "policy": "model"}]}
        ).raise_for_status()
        times: dict[str, list[float]] = {"plain": [], "unit": []}
        for i in range(args.requests + 50):
            for kind, params in (("plain", {}), ("unit", {"unit": f"v{i % 1000}"})):
                t = time.perf_counter()
                http.get("/exhibitions/e/representative", params=params).raise_for_status()
                if i >= 50:
                    times[kind].append(time.perf_counter() - t)
        out = {f"{k}_p{q}_ms": float(np.percentile(v, q)) * 1000 for k, v in times.items() for q in (50, 90)}
        out["unit_over_plain_p50"] = out["unit_p50_ms"] / out["plain_p50_ms"]
        out["requests"] = args.requests
        print(json.dumps(out, indent=1))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
    finally:
        os.killpg(api.pid, signal.SIGTERM)
        api.wait(30)
        store.close()
        delete_prefix(redis.Redis.from_url(args.redis), prefix)


if __name__ == "__main__":
    main()
