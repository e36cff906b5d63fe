"""Tower throughput on this machine: images/s of the image tower, topics/s of the text tower.

    python benchmarks/towers.py --json benchmarks/results/towers.json [--device cuda]

Batch sizes 1, 8 and 32; inference mode; the image tower in bf16 autocast on CUDA, fp32 on CPU.
Each figure is the median of several timed repeats after warm-up, measured in the same run.

    python benchmarks/towers.py --encode [--images 256] [--rounds 3] --json benchmarks/results/encode.json

End to end from JPEG bytes on the CPU, side by side: the image pipeline (clik/image_pipeline.py:
hash, decode, transform, tower, unit vectors) over real H&M photos held in memory, with the
default bundle's tower run eagerly by torch and by ONNX Runtime, decoding on the tower's thread
(0 decode threads: one stage after the other) or on 1-2 threads ahead of it, with and without
JPEG draft mode; rounds interleave the configurations, so a change of load hits all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import clik  # noqa: E402

TOPICS = [
    {"name": "Men trousers", "date": "2022-05-01", "cat1": "Fashion", "cat2": "Men", "kwds": "spandex,pants,bending"},
    {"name": "Cropped sweatshirt for women", "cat1": "Fashion", "cat2": "Women", "kwds": "cropped,sweatshirt,daily"},
    {"name": "주문폭주 가을코디 매일매일 업뎃", "cat1": "패션", "cat2": "여성의류", "kwds": "가을신상,데일리룩"},
]


def timed(fn, repeats: int) -> float:
    """Median seconds of one call, after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


ENCODE_CONFIGS = [  # (label, backend, model threads, decode threads, JPEG draft)
    ("eager, decode inline", "torch", 1, 0, False),
    ("eager, 1 decode thread", "torch", 1, 1, False),
    ("onnx, decode inline", "onnx", 1, 0, False),
    ("onnx, 1 decode thread", "onnx", 1, 1, False),
    ("onnx, 2 decode threads", "onnx", 1, 2, False),
    ("onnx 2 threads, 1 decode thread", "onnx", 2, 1, False),
    ("onnx, 1 decode thread, draft", "onnx", 1, 1, True),
]


def encode_benchmark(args) -> None:
    import io
    import tempfile

    from PIL import Image

    from clik.image_pipeline import ImageItem, ImagePipeline
    from clik.encoders import ImageEncoder

    folder = args.data / "images"
    files = sorted(folder.glob("*.jpg"))[: args.images]
    if len(files) < args.images:
        raise SystemExit(f"need {args.images} JPEGs in {folder}, found {len(files)}")
    blobs = [f.read_bytes() for f in files]
    if args.upscale > 1:  # large photos, as many catalogues have them: where draft mode matters

        def bigger(data: bytes) -> bytes:
            image = Image.open(io.BytesIO(data)).convert("RGB")
            image = image.resize((image.width * args.upscale, image.height * args.upscale), Image.BICUBIC)
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=90)
            return out.getvalue()

        blobs = [bigger(b) for b in blobs]
    sizes = [Image.open(io.BytesIO(b)).size for b in blobs[:50]]
    with tempfile.TemporaryDirectory() as tmp:
        model = clik.create_model("clik-minilm-lite0").eval()
        bundle = clik.export_bundle(model, clik.create_tokenizer(model), Path(tmp) / "bundle")
        cache = args.onnx_cache or Path(tmp) / "onnx"
        started = time.perf_counter()
        encoders = {}
        for _, backend, threads, _, _ in ENCODE_CONFIGS:
            if (backend, threads) not in encoders:
                encoders[(backend, threads)] = ImageEncoder.load(
                    bundle.path,
                    device="cpu",
                    batch_size=args.batch,
                    backend=backend,
                    onnx_cache_dir=cache,
                    threads=threads,
                )
        print(f"encoders ready in {time.perf_counter() - started:.0f} s (ONNX export included unless cached)")
        check = {k: e.encode(blobs[:16]).vectors for k, e in encoders.items()}
        diff = float(np.abs(check[("torch", 1)] - check[("onnx", 1)]).max())
        print(
            f"{len(blobs)} H&M JPEGs ({sizes[0][0]}x{sizes[0][1]} typical), batch {args.batch}, "
            f"{os.cpu_count()} CPUs; eager vs ONNX: max |diff| {diff:.2e}",
            flush=True,
        )

        def run(backend: str, threads: int, decode_threads: int, draft: bool) -> float:
            encoder = encoders[(backend, threads)]
            torch.set_num_threads(threads)
            pipeline = ImagePipeline(threads=decode_threads, jpeg_draft=draft)
            start = time.perf_counter()
            items = pipeline.read([ImageItem(i, b) for i, b in enumerate(blobs)])
            done = sum(
                len(b.items) for b in pipeline.encode(items, encoder.transform, encoder.encode_pixels, args.batch)
            )
            assert done == len(blobs)
            return len(blobs) / (time.perf_counter() - start)

        load_before = os.getloadavg()[0]
        runs: dict[str, list[float]] = {label: [] for label, *_ in ENCODE_CONFIGS}
        for _ in range(args.rounds):
            for label, *config in ENCODE_CONFIGS:
                runs[label].append(round(run(*config), 1))
        load_after = os.getloadavg()[0]
    base = statistics.median(runs[ENCODE_CONFIGS[0][0]])
    rows = []
    print(f"\nmedian of {args.rounds} rounds (load average {load_before:.1f} -> {load_after:.1f}):")
    print(f"{'configuration':<34} {'images/s':>9} {'x eager':>8}   runs")
    for label, backend, threads, decode_threads, draft in ENCODE_CONFIGS:
        median = statistics.median(runs[label])
        rows.append(
            {
                "config": label,
                "backend": backend,
                "model_threads": threads,
                "decode_threads": decode_threads,
                "jpeg_draft": draft,
                "images_per_s": median,
                "vs_eager_inline": round(median / base, 2),
                "runs": runs[label],
            }
        )
        print(f"{label:<34} {median:>9.1f} {median / base:>7.2f}x   {runs[label]}")
    report = {
        "benchmark": "encode",
        "images": len(blobs),
        "image_size": sizes[0],
        "batch": args.batch,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "max_abs_diff_eager_onnx": diff,
        "load_average": [load_before, load_after],
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--encode", action="store_true", help="end to end from JPEG bytes, eager vs ONNX (CPU)")
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hm"
    )
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--upscale", type=int, default=1, help="re-encode the photos this many times larger")
    parser.add_argument("--onnx-cache", type=Path, default=None, help="keep the ONNX export here between runs")
    args = parser.parse_args()
    if args.encode:
        args.json = args.json or Path("benchmarks/results/encode.json")
        encode_benchmark(args)
        return
    args.json = args.json or Path("benchmarks/results/towers.json")

    model = clik.create_model("clik-minilm-lite0").eval().to(args.device)
    tokenizer = clik.create_tokenizer(model)
    autocast = args.device.startswith("cuda")
    results = []
    with torch.inference_mode():
        for batch in (1, 8, 32):
            pixels = torch.randn(batch, 3, 224, 224, device=args.device)

            def run_images():
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                    model.encode_images(pixels)

            seconds = timed(run_images, args.repeats)
            results.append(
                {
                    "tower": "image",
                    "model": "tf_efficientnet_lite0",
                    "batch": batch,
                    "seconds_per_batch": seconds,
                    "items_per_s": batch / seconds,
                }
            )

            topics = [TOPICS[i % len(TOPICS)] for i in range(batch)]

            def run_topics():
                tokens = {k: v.to(args.device) for k, v in tokenizer(topics).items()}
                model.ranking_query(model.encode_topics(**tokens))

            seconds = timed(run_topics, args.repeats)
            results.append(
                {
                    "tower": "text",
                    "model": "all-MiniLM-L6-v2",
                    "batch": batch,
                    "seconds_per_batch": seconds,
                    "items_per_s": batch / seconds,
                    "note": "tokenise + encode + group query",
                }
            )

    print(f"device={args.device} torch_threads={torch.get_num_threads()}")
    print(f"{'tower':<6} {'batch':>5} {'ms/batch':>10} {'items/s':>10}")
    for r in results:
        print(f"{r['tower']:<6} {r['batch']:>5} {r['seconds_per_batch'] * 1000:>10.1f} {r['items_per_s']:>10.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "results": results,
    }
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
