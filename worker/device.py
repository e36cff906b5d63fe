"""Per-process device setup: one code path, the device found decides.

CUDA: batches are pinned (worker.encode.stack_for) and copied non_blocking, the tower runs under
bf16 autocast (clik.encoders.ImageEncoder). CPU: torch's intra-op threads from the settings, by
default one less than the cores: fetching/decoding threads, Celery and Redis need a core, and
torch's OpenMP threads collapse when one of theirs is taken away (benchmarks/ingest.py on the
2-core dev box: 1 thread 22-24 images/s, 2 threads 2-9 images/s, same run).
"""

from __future__ import annotations

import os

import torch

from clik.encoders import pick_device


def configure(device: str | None, torch_threads: int | None) -> str:
    """Resolve the device and apply the thread setting; returns the device name."""
    name = pick_device(device)
    if torch_threads is None and name == "cpu":
        torch_threads = default_cpu_threads()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    if name.startswith("cuda"):
        # TF32 matmuls where bf16 autocast does not apply; harmless for inference.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed 224x224 input: pick the fastest kernels
    return name


def default_cpu_threads() -> int:
    return max(1, (os.cpu_count() or 2) - 1)
