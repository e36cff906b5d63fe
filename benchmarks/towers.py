"""Tower throughput on this machine: images/s of the image tower, topics/s of the text tower.

    python benchmarks/towers.py --json benchmarks/results/towers.json [--device cuda]

Batch sizes 1, 8 and 32; inference mode; the image tower in bf16 autocast on CUDA, fp32 on CPU.
Each figure is the median of several timed repeats after warm-up, measured in the same run.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/towers.json"))
    args = parser.parse_args()

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
            results.append({"tower": "image", "model": "tf_efficientnet_lite0", "batch": batch,
                            "seconds_per_batch": seconds, "items_per_s": batch / seconds})

            topics = [TOPICS[i % len(TOPICS)] for i in range(batch)]

            def run_topics():
                tokens = {k: v.to(args.device) for k, v in tokenizer(topics).items()}
                model.ranking_query(model.encode_topics(**tokens))

            seconds = timed(run_topics, args.repeats)
            results.append({"tower": "text", "model": "all-MiniLM-L6-v2", "batch": batch,
                            "seconds_per_batch": seconds, "items_per_s": batch / seconds,
                            "note": "tokenise + encode + group query"})

    print(f"device={args.device} torch_threads={torch.get_num_threads()}")
    print(f"{'tower':<6} {'batch':>5} {'ms/batch':>10} {'items/s':>10}")
    for r in results:
        print(f"{r['tower']:<6} {r['batch']:>5} {r['seconds_per_batch'] * 1000:>10.1f} {r['items_per_s']:>10.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "results": results}
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
