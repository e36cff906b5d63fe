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

from clik.image_source import ImageLoadError, content_hash, decode_image, read_source
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
    hashes: dict[str, str] = {}
    errors: dict[str, str] = {}
    todo: list[tuple[str, bytes]] = []
    queued: set[str] = set()
    for source in dict.fromkeys(sources):
        try:
            data = read_source(source)
        except ImageLoadError as exc:
            errors[source] = exc.reason
            continue
        digest = content_hash(data)
        hashes[source] = digest
        if digest not in cache and digest not in queued:
            queued.add(digest)
            todo.append((source, data))
    was_training = tower.training
    tower.eval()
    bar = tqdm(total=len(todo), desc="image features", unit="img", disable=not progress or not todo)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        pixels, keys = [], []
        for source, data in chunk:
            try:
                pixels.append(transform(decode_image(data)))
                keys.append(hashes[source])
            except ImageLoadError as exc:
                errors[source] = exc.reason
                del hashes[source]
        if pixels:
            feats = tower.features(torch.stack(pixels).to(device)).float().cpu().numpy()
            cache.add(keys, feats)
        bar.update(len(chunk))
        if (start // batch_size) % 64 == 63:
            cache.save()  # an interrupted extraction resumes from here
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
