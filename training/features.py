"""Backbone features computed once and cached on disk, for locked-tower training and evaluation.

Image features are keyed by (backbone, image content hash): the same photo used by several
products or datasets is encoded once, and a different backbone (architecture, input size or
weights) never reads another's features. Text features are keyed by (backbone, topic text).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from clik.image_pipeline import ImageItem, ImagePipeline, by_digest
from clik.model import ClikModel
from clik.tokenize import TopicTokenizer
from clik.transforms import eval_transform


def module_digest(module: torch.nn.Module) -> str:
    """A short hash of a module's weights: features from other weights must not be reused."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


class FeatureCache:
    """key → float32 row, persisted as ``features.npy`` + ``keys.json`` (written atomically)."""

    def __init__(self, directory: str | Path, dim: int):
        self.directory = Path(directory)
        self.dim = dim
        self.rows: dict[str, int] = {}
        self.matrix = np.zeros((0, dim), np.float32)
        keys_path = self.directory / "keys.json"
        if keys_path.exists():
            keys = json.loads(keys_path.read_text())
            matrix = np.load(self.directory / "features.npy")
            if matrix.shape != (len(keys), dim):
                raise ValueError(f"feature cache {self.directory} is inconsistent; delete it to rebuild")
            self.rows = {k: i for i, k in enumerate(keys)}
            self.matrix = matrix

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, keys: Sequence[str]) -> np.ndarray:
        return self.matrix[[self.rows[k] for k in keys]]

    def add(self, keys: Sequence[str], features: np.ndarray) -> None:
        new: dict[str, np.ndarray] = {}
        for key, feature in zip(keys, features):
            # The same content can arrive twice in one call (one photo behind two products).
            if key not in self.rows and key not in new:
                new[key] = feature
        if not new:
            return
        start = len(self.rows)
        for i, key in enumerate(new):
            self.rows[key] = start + i
        self.matrix = np.concatenate([self.matrix, np.stack(list(new.values())).astype(np.float32)])

    def save(self) -> None:
        """Write both files through temp names + rename, so a crash leaves the old cache whole."""
        self.directory.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.rows, key=self.rows.get)
        fd, tmp_npy = tempfile.mkstemp(dir=self.directory, suffix=".npy")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, self.matrix)
        fd, tmp_json = tempfile.mkstemp(dir=self.directory, suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(keys, fh)
        os.replace(tmp_npy, self.directory / "features.npy")
        os.replace(tmp_json, self.directory / "keys.json")


@dataclass
class ImageFeatures:
    hashes: dict[str, str]  # image source → content hash, for the images that could be read
    errors: dict[str, str]  # image source → reason
    cache: FeatureCache

    def of(self, sources: Sequence[str]) -> np.ndarray:
        return self.cache.get([self.hashes[s] for s in sources])


@torch.inference_mode()
def image_features(model: ClikModel, sources: Sequence[str], cache_root: str | Path, batch_size: int = 64,
                   device: str = "cpu", progress: bool = True) -> ImageFeatures:
    """Pooled image-backbone features for every source, computing only what the cache lacks."""
    tower = model.image
    key = f"image-{tower.cfg.name}-{tower.cfg.image_size}-{module_digest(tower.backbone)}"
    cache = FeatureCache(Path(cache_root) / key, tower.width)
    transform = eval_transform(tower.cfg.image_size, tower.cfg.mean, tower.cfg.std)
    # Read and hash every source (clik.image_pipeline), then decode, transform and run the
    # backbone on what the cache lacks, one photo once however many sources show it.
    pipeline = ImagePipeline()
    items = pipeline.read([ImageItem(source, source) for source in dict.fromkeys(sources)])
    hashes: dict[str, str] = {item.key: item.digest for item in items if item.ok and item.digest}
    errors: dict[str, str] = {item.key: item.reason for item in items if not item.ok}
    todo = [group[0] for digest, group in by_digest(items).items() if digest not in cache]
    was_training = tower.training
    tower.eval()
    bar = tqdm(total=len(todo), desc="image features", unit="img", disable=not progress or not todo)

    def backbone(pixels: torch.Tensor) -> np.ndarray:
        return tower.features(pixels.to(device)).float().cpu().numpy()

    for n, batch in enumerate(pipeline.encode(todo, transform, backbone, batch_size)):
        cache.add([hashes[item.key] for item in batch.items], batch.vectors)
        bar.update(len(batch.items))
        if n % 64 == 63:
            cache.save()  # an interrupted extraction resumes from here
    for item in todo:
        if not item.ok:
            errors[item.key] = item.reason
            del hashes[item.key]
    bar.close()
    tower.train(was_training)
    if todo:
        cache.save()
    # Copies of an image that failed to decode fail with it.
    for source, digest in list(hashes.items()):
        if digest not in cache:
            errors[source] = "unreadable (same content as another image that failed)"
            del hashes[source]
    return ImageFeatures(hashes, errors, cache)


@torch.inference_mode()
def text_features(model: ClikModel, tokenizer: TopicTokenizer, texts: Sequence[str], cache_root: str | Path,
                  batch_size: int = 64, device: str = "cpu") -> Callable[[Sequence[str]], np.ndarray]:
    """Pooled text-backbone features for topic texts; returns a lookup function text → rows."""
    tower = model.topic.text
    key = f"text-{tower.cfg.name.replace('/', '_')}-{tower.cfg.pooling}-{module_digest(tower.backbone)}"
    cache = FeatureCache(Path(cache_root) / key, tower.width)
    todo = [t for t in dict.fromkeys(texts) if t not in cache]
    was_training = tower.training
    tower.eval()
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        batch = {k: v.to(device) for k, v in tokenizer.encode_texts(chunk).items()}
        cache.add(chunk, tower.features(**batch).float().cpu().numpy())
    tower.train(was_training)
    if todo:
        cache.save()
    return cache.get
