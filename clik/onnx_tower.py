"""The image tower exported to ONNX and run by ONNX Runtime: the faster CPU path, same vectors.

Measured side by side on the 2-core dev box (``benchmarks/towers.py --encode``): EfficientNet-
Lite0 on one thread, ONNX Runtime 1.5-2x eager PyTorch (channels-last fp32), vectors within
fp16 rounding of each other (tests/clik/test_onnx_tower.py). Eager stays the path on CUDA
(bf16 autocast) and wherever onnxruntime is not installed.

The export is done once per model version and kept in a cache folder, keyed by the version
(a content hash of the bundle's weights and config) and by what the export depends on (torch's
version, the opset, the input size): a worker started again, or a second worker process on
the machine, loads the file instead of exporting again. The bundle folder itself is never
written: its content hash is the version name. Written through a temporary name and a rename,
so processes exporting at the same time never read half a file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

OPSET = 18  # what torch.onnx's exporter targets by default; part of the cache key
BACKENDS = ("torch", "onnx")


def onnx_available() -> bool:
    """onnxruntime to run an export, onnx and onnxscript to make one (the worker extra); looked
    up without importing them (seconds on a busy machine)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx", "onnxscript"))


def default_cache_dir() -> Path:
    """$CLIK_ONNX_CACHE_DIR, else $XDG_CACHE_HOME/clik/onnx (~/.cache/clik/onnx)."""
    explicit = os.environ.get("CLIK_ONNX_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clik" / "onnx"


def export_key(version: str, image_size: int) -> str:
    """The cache file's name: the model version plus everything else the exported graph
    depends on, so a new torch (another exporter) never loads an older export."""
    depends = f"{torch.__version__}|opset{OPSET}|{image_size}"
    return f"{version}-{hashlib.sha256(depends.encode()).hexdigest()[:10]}.onnx"


def export(tower: nn.Module, path: Path, image_size: int) -> Path:
    """Export ``tower`` (pixels (n, 3, S, S) → embeddings (n, d), any n) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = tower.training
    tower.eval()
    example = torch.zeros(2, 3, image_size, image_size)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".onnx")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on decompositions
            program = torch.onnx.export(
                tower.cpu(),
                (example,),
                input_names=["pixels"],
                output_names=["embeddings"],
                dynamic_shapes={"pixels": {0: torch.export.Dim("batch", min=1, max=4096)}},
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
            assert program is not None
            program.save(tmp, external_data=False)  # one file: nothing to keep together
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from workers running as other users
        os.replace(tmp, path)
    finally:
        tower.train(was_training)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class OnnxTower:
    """An ONNX Runtime session of an exported image tower; called like the tower (CPU only)."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between ops: on a machine whose other cores decode JPEGs (or run other
        # processes) a spinning thread only takes their time.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = Path(path)
        self.threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(pixels.detach().cpu().numpy(), dtype=np.float32)
        (out,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(out)


def load_onnx_tower(
    tower: nn.Module, version: str, image_size: int, cache_dir: str | Path | None = None, threads: int = 1
) -> OnnxTower:
    """The cached export of ``version``'s tower (exported now when missing) in a session."""
    path = Path(cache_dir or default_cache_dir()) / export_key(version, image_size)
    if not path.exists():
        log.info("exporting the image tower of %s to ONNX: %s", version, path)
        export(tower, path, image_size)
    return OnnxTower(path, threads)
