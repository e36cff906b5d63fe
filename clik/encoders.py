"""Inference wrappers around the two bundle sides: batching, preprocessing, no_grad, threads.

``TopicEncoder`` (API side): topic attributes → unit ranking query.
``ImageEncoder`` (worker side): images → unit image vectors, one failure never sinking the batch;
the tower run eagerly by torch or, on CPU, exported to ONNX and run by ONNX Runtime
(``backend``; clik/onnx_tower.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import BundleInfo, load_image_side, load_text_side
from .image_pipeline import ImageItem, ImagePipeline
from .image_source import DEFAULT_LIMITS, FetchLimits, ImageInput, describe, load_image
from .onnx_tower import load_onnx_tower, onnx_available
from .transforms import eval_transform


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_backend(backend: str, device: str) -> str:
    """``auto``: ONNX Runtime on CPU when it is installed (measured faster there:
    benchmarks/towers.py --encode), eager torch elsewhere (CUDA runs under bf16 autocast)."""
    if backend == "auto":
        return "onnx" if device == "cpu" and onnx_available() else "torch"
    if backend not in ("torch", "onnx"):
        raise ValueError(f"unknown image backend {backend!r}: torch, onnx or auto")
    if backend == "onnx" and device != "cpu":
        raise ValueError(f"the onnx image backend runs on the CPU only, not {device}")
    return backend


class TopicEncoder:
    def __init__(self, side, tokenizer, info: BundleInfo, device: str = "cpu"):
        self.side = side
        self.tokenizer = tokenizer
        self.info = info
        self.device = device

    @classmethod
    def load(cls, bundle_dir: str | Path, device: str | None = None) -> "TopicEncoder":
        device = pick_device(device)
        side, tokenizer, info = load_text_side(bundle_dir, device=device)
        return cls(side, tokenizer, info, device)

    @property
    def version(self) -> str:
        return self.info.version

    @torch.inference_mode()
    def queries(self, topics: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(len(topics), d) float32 unit vectors."""
        batch = {k: v.to(self.device) for k, v in self.tokenizer(topics).items()}
        query = self.side.ranking_query(self.side.encode(**batch))
        return query.float().cpu().numpy()

    def query(self, topic: Mapping[str, Any]) -> np.ndarray:
        return self.queries([topic])[0]

    @torch.inference_mode()
    def embeddings_and_queries(self, topics: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Unit topic embeddings (the Topic Matching space, where an image's cosine says how well
        it fits the topic) and unit ranking queries, both (len(topics), d) float32."""
        batch = {k: v.to(self.device) for k, v in self.tokenizer(topics).items()}
        emb = self.side.encode(**batch)
        query = self.side.ranking_query(emb)
        return F.normalize(emb.float(), dim=-1).cpu().numpy(), query.float().cpu().numpy()


@dataclass
class EncodedImages:
    """Vectors for the images that could be read; the others with their reason."""

    vectors: np.ndarray  # (n_ok, d) float32, unit norm
    indices: list[int]  # position in the input of each row of ``vectors``
    errors: dict[int, str] = field(default_factory=dict)


class ImageEncoder:
    def __init__(
        self,
        tower,
        info: BundleInfo,
        device: str = "cpu",
        batch_size: int = 16,
        limits: FetchLimits = DEFAULT_LIMITS,
        backend: str = "torch",
        onnx_cache_dir: str | Path | None = None,
        threads: int | None = None,
    ):
        self.tower = tower
        self.info = info
        self.device = device
        self.batch_size = batch_size
        self.limits = limits
        cfg = tower.cfg
        self.transform = eval_transform(cfg.image_size, cfg.mean, cfg.std)
        # bf16 on GPUs: halves memory traffic; the vectors are stored as fp16 anyway.
        self.autocast = device.startswith("cuda")
        self.backend = pick_backend(backend, device)
        # The model's threads: ONNX Runtime's intra-op pool, torch's own setting otherwise.
        self.run = (
            load_onnx_tower(tower, info.version, cfg.image_size, onnx_cache_dir, threads or torch.get_num_threads())
            if self.backend == "onnx"
            else tower
        )

    @classmethod
    def load(cls, bundle_dir: str | Path, device: str | None = None, **kwargs) -> "ImageEncoder":
        device = pick_device(device)
        tower, info = load_image_side(bundle_dir, device=device)
        return cls(tower, info, device, **kwargs)

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def pins_memory(self) -> bool:
        """CPU batches pinned, so the non-blocking copy to the GPU overlaps compute."""
        return str(self.device).startswith("cuda")

    def preprocess(self, source: ImageInput) -> torch.Tensor:
        return self.transform(load_image(source, self.limits))

    def encode(self, images: Sequence[ImageInput], threads: int = 1) -> EncodedImages:
        """Vectors of the images that can be read (clik.image_pipeline), the others' reasons."""
        pipeline = ImagePipeline(self.limits, threads=threads)
        items = pipeline.read([ImageItem(i, source) for i, source in enumerate(images)])
        rows: list[np.ndarray] = []
        indices: list[int] = []
        for batch in pipeline.encode(items, self.transform, self.encode_pixels, self.batch_size, self.pins_memory):
            rows.append(batch.vectors)
            indices.extend(item.key for item in batch.items)
        errors = {item.key: f"{describe(images[item.key])}: {item.reason}" for item in items if not item.ok}
        vectors = np.concatenate(rows) if rows else np.zeros((0, self.info.embed_dim), np.float32)
        return EncodedImages(vectors, indices, errors)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        out = []
        for start in range(0, pixels.shape[0], self.batch_size):
            chunk = pixels[start : start + self.batch_size].to(self.device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
                emb = self.run(chunk)
            out.append(F.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(out).numpy()
