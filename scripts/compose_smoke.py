"""Smoke test of the compose stack over HTTP (scripts/compose-up.sh runs it after `up`).

Loads the catalogue `clik demo` wrote (its images are in the stack's images volume under
/data/images/demo) through the first API replica, waits while the CPU worker encodes every image
from the broker, then asks both replicas for the representative images of the held-out
exhibitions: both must answer with the same top 3 of the same model version. Also checks
/readyz on both replicas and Flower's page. Exit status 0 only when everything held.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path, PurePosixPath

import httpx

from training.data.format import load_dataset

REPLICAS = ("http://127.0.0.1:8000", "http://127.0.0.1:8001")  # docker-compose.yml: 8000-8001:8000
FLOWER = "http://127.0.0.1:5555"
IMAGES_IN_STACK = PurePosixPath("/data/images/demo")  # where compose-up.sh copied the demo's data
DATA_IN_DEMO = PurePosixPath("/demo/data")  # the data folder as the demo container saw it


def api_key(env_file: Path) -> str:
    for line in env_file.read_text().splitlines():
        if line.startswith("CLIK_API_KEYS="):
            return json.loads(line.split("=", 1)[1])[0]
    raise SystemExit(f"{env_file}: no CLIK_API_KEYS")


def wait_until(what: str, ok, timeout_s: float, every_s: float = 2.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = ok()
            if result:
                return result
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: {what} (waited {timeout_s:.0f}s)")
        time.sleep(every_s)


def image_in_stack(path: str) -> str:
    """The demo's image path (relative to its data folder, or absolute in the demo container) as
    the API and worker containers see it."""
    p = PurePosixPath(path)
    if p.is_absolute():
        p = p.relative_to(DATA_IN_DEMO)
    return str(IMAGES_IN_STACK / p)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, required=True, help="the demo's work folder (its data/ is read)")
    ap.add_argument("--env", type=Path, default=Path(".env"), help="the compose .env (its first API key)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for the encodes")
    args = ap.parse_args()
    headers = {"X-API-Key": api_key(args.env)}

    for base in REPLICAS:
        wait_until(f"{base}/healthz answers", lambda base=base: httpx.get(f"{base}/healthz", timeout=5).is_success, 300)
    dataset = load_dataset(args.demo / "data")
    products: dict[str, dict] = {}
    for ex in dataset.exhibitions:
        for p in ex.products:
            products.setdefault(p.id, {"product_id": p.id, "image_url": image_in_stack(p.image)})
    started = time.monotonic()
    with httpx.Client(base_url=REPLICAS[0], headers=headers, timeout=60) as client:
        items = list(products.values())
        for i in range(0, len(items), 500):
            client.put("/products", json={"products": items[i : i + 500]}).raise_for_status()
        for ex in dataset.exhibitions:
            client.put(
                f"/exhibitions/{ex.id}",
                json={"topic": {k: v for k, v in ex.topic.items() if v}, "product_ids": [p.id for p in ex.products]},
            ).raise_for_status()
        print(f"   {len(items)} products and {len(dataset.exhibitions)} exhibitions PUT on {REPLICAS[0]}")

        def statuses() -> dict[str, int]:
            counts: dict[str, int] = {}
            for pid in products:
                status = client.get(f"/products/{pid}").raise_for_status().json()["status"]
                counts[status] = counts.get(status, 0) + 1
            return counts

        def all_settled():
            counts = statuses()
            print(f"   {counts}", flush=True)
            return counts if counts.get("pending", 0) == 0 else None

        counts = wait_until("the worker encodes every image", all_settled, args.timeout, every_s=5)
        if counts.get("encoded", 0) != len(products):
            raise SystemExit(f"FAIL: not every image was encoded: {counts}")
        print(f"   every image encoded by the CPU worker in {time.monotonic() - started:.0f}s")

    held_out = dataset.split("test")
    for base in REPLICAS:
        wait_until(
            f"{base}/readyz is 200", lambda base=base: httpx.get(f"{base}/readyz", timeout=10).status_code == 200, 300
        )
    failures = 0
    for ex in held_out[:5]:
        answers = []
        for base in REPLICAS:
            r = httpx.get(f"{base}/exhibitions/{ex.id}/representative", params={"topk": 3}, timeout=60)
            r.raise_for_status()
            body = r.json()
            answers.append((body["model_version"], [it["product_id"] for it in body["items"]]))
        same = answers[0] == answers[1] and answers[0][1]
        failures += not same
        print(
            f"   {ex.topic.get('name', ex.id)!r}: {answers[0][1]} (version {answers[0][0][:12]})"
            f"{'' if same else f'  MISMATCH with {REPLICAS[1]}: {answers[1]}'}"
        )
    r = httpx.get(FLOWER, timeout=10)
    print(f"   Flower {FLOWER}: HTTP {r.status_code}")
    failures += not r.is_success
    print("PASS: representative images answered by both replicas" if not failures else f"FAIL: {failures} checks")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
