"""Conditional ranking answers over HTTP, side by side in one run: a full 200 against a 304.

    python benchmarks/conditional.py [--products 10000] [--topk 10] [--rounds 300] [--json OUT]

The API (uvicorn in this process, Redis store) serves one exhibition of N products with random
vectors; rounds alternate a plain GET (200, the answer rendered once and then reused) and a GET
with the current ETag in If-None-Match (304, no body). Medians in ms, and the bytes sent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.support import delete_prefix  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=10_000)
    ap.add_argument("--topk", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    import clik
    from api.app import create_app
    from api.settings import ApiSettings
    from clik_cli.single_machine import serve_in_thread
    from indexer.config import open_store
    import socket
    import tempfile

    import httpx

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    torch.manual_seed(0)
    model = clik.ClikModel(clik.get_model_config("clik-tiny-test"), load_weights=False).eval()
    bundle = clik.export_bundle(model, clik.create_tokenizer(model), Path(tempfile.mkdtemp()) / "b")
    prefix = f"clik-bench-cond-{uuid.uuid4().hex[:8]}:"
    store = open_store(args.redis, prefix=prefix)
    rng = np.random.default_rng(0)
    store.register_version(
        bundle.version, bundle.embed_dim, bundle_uri=str(bundle.path), expected_vectors=args.products
    )
    store.activate(bundle.version)
    n = args.products
    store.import_products([(f"p{i}", f"https://img.example/{i}.jpg", f"h{i}") for i in range(n)])
    for start in range(0, n, 5000):
        vecs = rng.standard_normal((min(5000, n - start), bundle.embed_dim)).astype(np.float32)
        store.put_vectors(bundle.version, [(f"h{start + i}", v) for i, v in enumerate(vecs)])
    store.put_exhibition("e", {"name": "linen shirts"}, [f"p{i}" for i in range(n)])
    settings = ApiSettings(_env_file=None, store_url=args.redis, store_prefix=prefix, device="cpu", api_keys=["k"])
    server = serve_in_thread(create_app(settings, store=store), "127.0.0.1", free_port())
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            path = f"/exhibitions/e/representative?topk={args.topk}"
            first = http.get(path)
            tag = first.headers["etag"]
            times = {"full_200": [], "not_modified_304": []}
            sizes = {"full_200": len(first.content), "not_modified_304": 0}
            for _ in range(args.rounds):
                for name, headers in (("full_200", {}), ("not_modified_304", {"If-None-Match": tag})):
                    t = time.perf_counter()
                    r = http.get(path, headers=headers)
                    times[name].append((time.perf_counter() - t) * 1e3)
                    assert r.status_code == (200 if not headers else 304)
    finally:
        server.stop()
        delete_prefix(store.r, prefix)
        store.close()
    result = {
        "products": n,
        "topk": args.topk,
        **{f"{k}_ms": round(statistics.median(v), 3) for k, v in times.items()},
        "bytes": sizes,
    }
    print(
        f"{n:,} products, top {args.topk}: 200 {result['full_200_ms']:.2f} ms ({sizes['full_200']} bytes), "
        f"304 {result['not_modified_304_ms']:.2f} ms (no body)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
