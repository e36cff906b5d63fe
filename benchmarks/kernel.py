"""The ranking kernel at 100,000 products against the memory bandwidth of this machine.

    python benchmarks/kernel.py [--products 100000] [--dim 128] [--json PATH]

One thread (the API runs BLAS single-threaded: api/settings.py blas_threads), one query:
  gemv fp32        : cosine scores of the decoded block (what the process caches) = matrix @ q
  gemv + top-k     : the same plus indexer.ranking.ranked_slice (argpartition, k = 10)
  gemv + full sort : the same with a full stable argsort instead (what argpartition avoids)
  fp16 widen+gemv  : scoring the packed fp16 rows directly, widened to fp32 in cache-sized chunks
                     (half the bytes from memory; numpy has no fp16 GEMV of its own)
  fp16 astype      : widening the whole block once (what decode_block pays per new block)
Bandwidth: bytes the kernel reads from memory / its time, next to a numpy copy (np.copyto) of
a 256 MB array measured in the same run, counted as read + write bytes per second (a copy
moves every byte twice). The target of issue 16: the kernel within 2x of that bandwidth.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.ranking import ranked_slice  # noqa: E402

K = 10


def p50_s(fn, repeats: int) -> float:
    fn()  # warm: page faults, BLAS set-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def widen_gemv(rows16: np.ndarray, q: np.ndarray, chunk: int = 4096) -> np.ndarray:
    out = np.empty(rows16.shape[0], np.float32)
    buf = np.empty((chunk, rows16.shape[1]), np.float32)
    for start in range(0, rows16.shape[0], chunk):
        part = rows16[start : start + chunk]
        view = buf[: len(part)]
        np.copyto(view, part)  # fp16 -> fp32 into a buffer that stays in cache
        np.matmul(view, q, out=out[start : start + len(part)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "kernel.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    m = rng.standard_normal((args.products, args.dim), dtype=np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    m16 = m.astype(np.float16)
    q = m[0].copy()
    big = np.ones(256 * 2**20 // 8)
    dst = np.empty_like(big)
    with threadpool_limits(limits=1, user_api="blas"):
        copy_s = p50_s(lambda: np.copyto(dst, big), max(5, args.repeats // 3))
        copy_gbps = 2 * big.nbytes / copy_s / 1e9
        rows = {
            "gemv fp32": (m.nbytes, p50_s(lambda: m @ q, args.repeats)),
            "gemv + top-k": (m.nbytes, p50_s(lambda: ranked_slice(m @ q, 0, K), args.repeats)),
            "gemv + full sort": (m.nbytes, p50_s(lambda: np.argsort(-(m @ q), kind="stable")[:K], args.repeats)),
            "fp16 widen+gemv": (m16.nbytes, p50_s(lambda: widen_gemv(m16, q), args.repeats)),
            "fp16 astype": (m16.nbytes, p50_s(lambda: m16.astype(np.float32), max(5, args.repeats // 3))),
        }
    assert np.allclose(widen_gemv(m16, q), m16.astype(np.float32) @ q, atol=1e-5)
    out = {"products": args.products, "dim": args.dim, "copy_GBps_read_plus_write": copy_gbps, "kernels": {}}
    print(f"numpy copy of 256 MB: {copy_gbps:.1f} GB/s (read + write), one thread")
    print("| kernel | MB read | ms | GB/s read | copy bandwidth / kernel |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (nbytes, seconds) in rows.items():
        gbps = nbytes / seconds / 1e9
        out["kernels"][name] = {
            "bytes": nbytes,
            "ms": seconds * 1e3,
            "GBps": gbps,
            "copy_over_kernel": copy_gbps / gbps,
        }
        print(f"| {name} | {nbytes / 1e6:.1f} | {seconds * 1e3:.2f} | {gbps:.1f} | {copy_gbps / gbps:.2f}x |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
