"""Per-process device setup: one code path, the device found decides.

CUDA: batches are pinned (worker.encode.stack_for) and copied non_blocking, the tower runs under
bf16 autocast (clik.runtime.ImageEncoder). CPU: torch's intra-op thread count from the settings
(by default torch uses one per core; lower it when several worker processes share a machine).
"""
from __future__ import annotations

import torch

from clik.runtime import pick_device


def configure(device: str | None, torch_threads: int | None) -> str:
    """Resolve the device and apply the thread setting; returns the device name."""
    name = pick_device(device)
    if torch_threads:
        torch.set_num_threads(torch_threads)
    if name.startswith("cuda"):
        # TF32 matmuls where bf16 autocast does not apply; harmless for inference.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed 224x224 input: pick the fastest kernels
    return name
