"""The image tower alone on CPU runtimes: eager torch, ONNX Runtime (the worker's CPU backend),
and OpenVINO in fp32 and bf16 when it is installed (`pip install openvino`; not a dependency).

    python benchmarks/cpu_backends.py --batch 16 --rounds 3 --json benchmarks/results/cpu_backends.json

One ONNX export of the default bundle's image tower (clik-minilm-lite0: EfficientNet-Lite0) runs
under every runtime on one thread, on the same random batch; rounds interleave the runtimes in
windows of --window seconds, so a change of load on a shared machine hits them all. Reported:
images/s (median of the rounds) and how far each runtime's vectors are from ONNX Runtime's
(max |diff|, and the lowest cosine): a runtime is only a candidate when its vectors stay within
the fp16 rounding the store keeps them at.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def openvino_runner(path: Path, precision: str):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(path)),
        "CPU",
        {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": precision},
    )
    return lambda x: compiled(x)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=float, default=2.0, help="seconds each runtime runs per round")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "cpu_backends.json")
    args = ap.parse_args()

    import clik
    from clik.onnx_tower import OnnxTower, export

    torch.set_num_threads(1)
    model = clik.create_model("clik-minilm-lite0").eval()
    tower = model.image
    size = tower.cfg.image_size
    x = np.random.default_rng(0).standard_normal((args.batch, 3, size, size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = export(tower, Path(tmp) / "tower.onnx", size)
        ort = OnnxTower(path, threads=1)
        runners = {"onnxruntime fp32": lambda a: ort(torch.from_numpy(a)).numpy()}

        def eager(a):
            with torch.inference_mode():
                return tower(torch.from_numpy(a)).numpy()

        runners["eager torch fp32"] = eager
        if importlib.util.find_spec("openvino") is not None:
            runners["openvino fp32"] = openvino_runner(path, "f32")
            runners["openvino bf16"] = openvino_runner(path, "bf16")
        else:
            print("openvino is not installed: its rows are skipped")

        reference = runners["onnxruntime fp32"](x)
        rows = {}
        for name, run in runners.items():
            out = run(x)
            cos = (out * reference).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
            rows[name] = {
                "max_abs_diff_vs_onnxruntime": float(np.abs(out - reference).max()),
                "max_diff_over_max_value": float(np.abs(out - reference).max() / np.abs(reference).max()),
                "min_cosine_vs_onnxruntime": float(cos.min()),
                "runs": [],
            }
        load_before = os.getloadavg()[0]
        for _ in range(args.rounds):
            for name, run in runners.items():
                run(x)
                start, n = time.perf_counter(), 0
                while time.perf_counter() - start < args.window:
                    run(x)
                    n += 1
                rows[name]["runs"].append(round(n * args.batch / (time.perf_counter() - start), 1))
        load_after = os.getloadavg()[0]

    print(f"image tower alone, batch {args.batch}, one thread, load average {load_before:.1f} -> {load_after:.1f}")
    print(f"{'runtime':18} {'images/s':>9} {'max|diff|':>10} {'min cos':>9}  runs")
    for name, row in rows.items():
        row["images_per_s"] = statistics.median(row["runs"])
        print(
            f"{name:18} {row['images_per_s']:>9.1f} {row['max_abs_diff_vs_onnxruntime']:>10.2e} "
            f"{row['min_cosine_vs_onnxruntime']:>9.6f}  {row['runs']}"
        )
    report = {
        "benchmark": "cpu_backends",
        "batch": args.batch,
        "threads": 1,
        "cpus": os.cpu_count(),
        "load_average": [load_before, load_after],
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
