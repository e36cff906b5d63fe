"""Backbone features computed once and cached on disk, for locked-tower training and evaluation.

Image features are keyed by (backbone, image content hash): the same photo used by several
products or datasets is encoded once, and a different backbone (architecture, input size or
weights) never reads another's features. Text features are keyed by (backbone, topic text).
Partial mode also caches each image's stem activations (the backbone before its trained top),
keyed by the stem's own weights, so a partially trained model still finds them.
"""

from __future__ import annotations

import fcntl
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
from clik.towers import stages
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
    """key → row, persisted as ``features.npy`` + ``keys.json`` (written atomically).

    Several processes may fill one cache at once (the runs of `clik experiment`, a dataset
    builder): `save` merges what others saved meanwhile, under a file lock, instead of writing
    over it.
    """

    def __init__(self, directory: str | Path, dim: int, dtype: type = np.float32):
        self.directory = Path(directory)
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self.rows: dict[str, int] = {}
        self._chunks: list[np.ndarray] = [np.zeros((0, dim), self.dtype)]
        on_disk = self._read()
        if on_disk is not None:
            keys, matrix = on_disk
            self.rows = {k: i for i, k in enumerate(keys)}
            self._chunks = [matrix]

    def _read(self) -> tuple[list[str], np.ndarray] | None:
        keys_path = self.directory / "keys.json"
        if not keys_path.exists():
            return None
        keys = json.loads(keys_path.read_text())
        matrix = np.load(self.directory / "features.npy", mmap_mode="r")
        if matrix.shape != (len(keys), self.dim):
            raise ValueError(f"feature cache {self.directory} is inconsistent; delete it to rebuild")
        return keys, np.asarray(matrix, dtype=self.dtype)

    @property
    def matrix(self) -> np.ndarray:
        if len(self._chunks) > 1:  # appended batch by batch; joined once, when read
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0]

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
        self._chunks.append(np.stack(list(new.values())).reshape(len(new), self.dim).astype(self.dtype))

    def save(self) -> None:
        """Merge what other processes saved, then write both files through temp names + rename
        (a crash leaves the old cache whole); the lock keeps two savers from losing rows."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            on_disk = self._read()
            if on_disk is not None:
                keys, matrix = on_disk
                theirs = [i for i, k in enumerate(keys) if k not in self.rows]
                if theirs:
                    self.add([keys[i] for i in theirs], matrix[theirs])
            keys = sorted(self.rows, key=self.rows.__getitem__)
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


def _read_sources(
    sources: Sequence[str], cache: FeatureCache
) -> tuple[dict[str, str], dict[str, str], list[ImageItem]]:
    """Read and hash every source once (clik.image_pipeline): its content hash, or why it could
    not be read, and one item per content the cache lacks, however many sources show it."""
    items = ImagePipeline().read([ImageItem(source, source) for source in dict.fromkeys(sources)])
    hashes: dict[str, str] = {item.key: item.digest for item in items if item.ok and item.digest}
    errors: dict[str, str] = {item.key: item.reason for item in items if not item.ok}
    todo = [group[0] for digest, group in by_digest(items).items() if digest not in cache]
    return hashes, errors, todo


def _encode_missing(
    todo: list[ImageItem],
    hashes: dict[str, str],
    errors: dict[str, str],
    transform,
    tower: Callable[[torch.Tensor], np.ndarray],
    add: Callable[[list[str], np.ndarray], None],
    save: Callable[[], None],
    batch_size: int,
    desc: str,
    progress: bool,
) -> None:
    """Decode, transform and encode the images the cache lacks, batch by batch (the pipeline's
    stages); `add(keys, outputs)` keeps their rows. A photo that fails to decode fails alone,
    with its reason."""
    bar = tqdm(total=len(todo), desc=desc, unit="img", disable=not progress or not todo)
    for n, batch in enumerate(ImagePipeline().encode(todo, transform, tower, batch_size)):
        add([hashes[item.key] for item in batch.items], batch.vectors)
        bar.update(len(batch.items))
        if n % 64 == 63:
            save()  # an interrupted extraction resumes from here
    bar.close()
    for item in todo:
        if not item.ok:
            errors[item.key] = item.reason
            del hashes[item.key]
    if todo:
        save()


def _drop_failed_copies(hashes: dict[str, str], errors: dict[str, str], cache: FeatureCache) -> None:
    # Copies of an image that failed to decode fail with it.
    for source, digest in list(hashes.items()):
        if digest not in cache:
            errors[source] = "unreadable (same content as another image that failed)"
            del hashes[source]


def stem_digest(tower, top_stages: int) -> str:
    """A short hash of the stem's weights (the backbone less its top), so a partially trained
    backbone, whose top changed, still finds the stem activations it was trained from."""
    top = stages.top_prefixes(tower.backbone, top_stages)
    digest = hashlib.sha256()
    for name, tensor in tower.backbone.state_dict().items():
        if not name.startswith(top):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def _stem_cache_dir(cache_root: str | Path, tower, top_stages: int) -> Path:
    return (
        Path(cache_root)
        / f"stem-{tower.cfg.name}-{tower.cfg.image_size}-top{top_stages}-{stem_digest(tower, top_stages)}"
    )


@dataclass
class StemFeatures:
    """Stem activations of every readable source (partial mode), float16 rows of `shape`."""

    features: ImageFeatures
    shape: tuple[int, ...]

    def of(self, sources: Sequence[str]) -> np.ndarray:
        return self.features.of(sources).reshape(len(sources), *self.shape)


@torch.inference_mode()
def image_stem_features(
    model: ClikModel,
    sources: Sequence[str],
    cache_root: str | Path,
    top_stages: int,
    batch_size: int = 16,
    device: str = "cpu",
    progress: bool = True,
) -> StemFeatures:
    """Activations entering the image backbone's last `top_stages` stages, cached (float16: a
    Lite0 image cut before its last stage is 192x7x7 = 18.4 KiB). The pooled features of the
    untrained top are filled in the locked-mode cache in the same pass, so locked runs on the
    same images find them."""
    tower = model.image
    was_training = tower.training
    tower.eval()
    shape = _stem_shape(tower, top_stages)
    cache = FeatureCache(_stem_cache_dir(cache_root, tower, top_stages), int(np.prod(shape)), np.float16)
    pooled = FeatureCache(Path(cache_root) / _pooled_key(tower), tower.width)
    transform = eval_transform(tower.cfg.image_size, tower.cfg.mean, tower.cfg.std)
    hashes, errors, todo = _read_sources(sources, cache)

    def stem(pixels: torch.Tensor) -> np.ndarray:
        return tower.stem(pixels.to(device), top_stages).half().cpu().numpy()

    def add(keys: list[str], acts: np.ndarray) -> None:
        cache.add(keys, acts)
        top = tower.features_from_stem(torch.as_tensor(acts, device=device).float(), top_stages)
        pooled.add(keys, top.float().cpu().numpy())

    def save() -> None:
        cache.save()
        pooled.save()

    _encode_missing(todo, hashes, errors, transform, stem, add, save, batch_size, "stem features", progress)
    tower.train(was_training)
    _drop_failed_copies(hashes, errors, cache)
    return StemFeatures(ImageFeatures(hashes, errors, cache), shape)


def _pooled_key(tower) -> str:
    return f"image-{tower.cfg.name}-{tower.cfg.image_size}-{module_digest(tower.backbone)}"


def _stem_shape(tower, top_stages: int) -> tuple[int, ...]:
    """The shape of one image's stem activations (one blank image through the stem)."""
    size = tower.cfg.image_size
    device = next(tower.parameters()).device
    return tuple(tower.stem(torch.zeros(1, 3, size, size, device=device), top_stages).shape[1:])


def _stem_source(tower, cache_root: str | Path) -> tuple[FeatureCache, int, tuple[int, ...]] | None:
    """A stem activation cache this backbone's stem wrote (the largest top first: its top is
    cheapest to run), if there is one."""
    try:
        count = stages.stage_count(tower.backbone)
    except ValueError:
        return None
    for top_stages in range(count - 1, -1, -1):
        directory = _stem_cache_dir(cache_root, tower, top_stages)
        if (directory / "keys.json").exists():
            shape = _stem_shape(tower, top_stages)
            return FeatureCache(directory, int(np.prod(shape)), np.float16), top_stages, shape
    return None


@torch.inference_mode()
def image_features(
    model: ClikModel,
    sources: Sequence[str],
    cache_root: str | Path,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> ImageFeatures:
    """Pooled image-backbone features for every source, computing only what the cache lacks.
    Images whose stem activations are cached (partial mode) are finished from those, which is
    how a partially trained model is evaluated without decoding a photo."""
    tower = model.image
    cache = FeatureCache(Path(cache_root) / _pooled_key(tower), tower.width)
    transform = eval_transform(tower.cfg.image_size, tower.cfg.mean, tower.cfg.std)
    hashes, errors, todo = _read_sources(sources, cache)
    was_training = tower.training
    tower.eval()
    stem = _stem_source(tower, cache_root) if todo else None
    if stem is not None:
        stem_cache, top_stages, shape = stem
        from_stem = [item for item in todo if hashes[item.key] in stem_cache]
        for start in range(0, len(from_stem), batch_size):
            keys = [hashes[item.key] for item in from_stem[start : start + batch_size]]
            acts = torch.as_tensor(stem_cache.get(keys).reshape(len(keys), *shape), device=device).float()
            cache.add(keys, tower.features_from_stem(acts, top_stages).float().cpu().numpy())
        todo = [item for item in todo if hashes[item.key] not in stem_cache]

    def backbone(pixels: torch.Tensor) -> np.ndarray:
        return tower.features(pixels.to(device)).float().cpu().numpy()

    _encode_missing(
        todo, hashes, errors, transform, backbone, cache.add, cache.save, batch_size, "image features", progress
    )
    if stem is not None and not todo:
        cache.save()
    tower.train(was_training)
    _drop_failed_copies(hashes, errors, cache)
    return ImageFeatures(hashes, errors, cache)


@torch.inference_mode()
def text_features(
    model: ClikModel,
    tokenizer: TopicTokenizer,
    texts: Sequence[str],
    cache_root: str | Path,
    batch_size: int = 64,
    device: str = "cpu",
) -> Callable[[Sequence[str]], np.ndarray]:
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
