"""Throughput of shopper events: POST /events into the Redis Stream, then counting them.

    python benchmarks/events.py [--events 200000] [--batch 1000] [--clients 4] [--json OUT]

The API runs as a deployment would (uvicorn, `--workers 2`, Redis store); --clients threads post
batches of --batch events (pre-built JSON bodies, so the client costs little); then one
in-process consumer counts them all (indexer.events.consume). Both share this machine's cores.
Reported: events/s accepted (202) and events/s counted, exactly-once checked at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import support  # noqa: E402
from benchmarks.support import delete_prefix  # noqa: E402

from indexer.events import RedisEventLog, consume  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    prefix = f"clik-bench-ev-{uuid.uuid4().hex[:8]}:"
    key = "bench-key"
    port = 18000 + os.getpid() % 1000
    env = {
        **os.environ,
        "CLIK_STORE_URL": args.redis,
        "CLIK_STORE_PREFIX": prefix,
        "CLIK_API_KEYS": json.dumps([key]),
        "CLIK_PRELOAD_MODEL": "false",
        "CLIK_EVENTS_BATCH_MAX": str(args.batch),
        "CLIK_DEVICE": "cpu",
    }
    proc = support.start_api(env, port, args.workers)
    url = f"http://127.0.0.1:{port}"
    try:
        support.wait_ready(url, proc, path="/healthz", timeout=120)
        bodies = []
        for start in range(0, args.events, args.batch):
            events = [
                {
                    "event_id": f"e{i}",
                    "type": "click" if i % 20 == 0 else "impression",
                    "exhibition_id": f"x{i % 500}",
                    "product_id": f"p{i % 200}",
                    "model_version": "v1",
                    "position": 1 + i % 6,
                    "unit": f"u{i % 10_000}",
                    "arm": "clik",
                }
                for i in range(start, min(start + args.batch, args.events))
            ]
            bodies.append(json.dumps({"events": events}).encode())
        failures: list[int] = []
        todo = list(range(len(bodies)))
        lock = threading.Lock()

        def client() -> None:
            with httpx.Client(
                base_url=url, headers={"X-API-Key": key, "content-type": "application/json"}, timeout=60
            ) as http:
                while True:
                    with lock:
                        if not todo:
                            return
                        n = todo.pop()
                    r = http.post("/events", content=bodies[n])
                    if r.status_code != 202:
                        failures.append(r.status_code)

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        accept_s = time.perf_counter() - started
    finally:
        support.stop(proc)
    log = RedisEventLog.from_url(args.redis, prefix)
    started = time.perf_counter()
    counted = consume(log, "bench", batch=2000, block_ms=200, stop_after_idle=1.0)
    count_s = time.perf_counter() - started - 1.0
    stats = log.stats()
    result = {
        "events": args.events,
        "batch": args.batch,
        "clients": args.clients,
        "api_workers": args.workers,
        "failed_requests": len(failures),
        "accepted_per_s": round(args.events / accept_s),
        "counted_per_s": round(counted / max(count_s, 1e-9)),
        "counted": counted,
        "lost_events": args.events - stats.get("counted", 0),
        "double_counted": stats.get("duplicates", 0),
    }
    client = redis.Redis.from_url(args.redis)
    delete_prefix(client, prefix)
    print(
        f"{args.events:,} events in batches of {args.batch}: accepted {result['accepted_per_s']:,}/s "
        f"({args.clients} clients, {args.workers} API workers), counted {result['counted_per_s']:,}/s; "
        f"lost {result['lost_events']}, double-counted {result['double_counted']}, failed requests {len(failures)}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
