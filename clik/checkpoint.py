"""Training checkpoints and exported bundles: safetensors + JSON, never pickles.

Checkpoint (what training writes, everything in one place)::

    run/checkpoint/config.json        ModelConfig (with the text backbone's own config inside)
    run/checkpoint/model.safetensors  all weights and buffers (memory bank included)
    run/checkpoint/tokenizer/         the topic tokenizer's files

Bundle (what ``export`` writes for serving, split by who loads it)::

    bundle/bundle.json                {"version", "embed_dim", "method", ...}
    bundle/text/config.json           + weights.safetensors + tokenizer/   (API: topic → query)
                                      tokenizer/topic_tokenizer.json: topic prefix (e5: "query: ")
    bundle/image/config.json          + weights.safetensors                (worker: image → vector)

The model version is a content hash over both parts, so two exports of the same weights get
the same version and any change in weights or config gives a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_model, save_model
from torch import nn

from .config import ModelConfig
from .model import ClikModel, TopicSide
from .tokenize import TopicTokenizer
from .towers import ImageTower

CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
CHECKPOINT_WEIGHTS = "model.safetensors"  # a training checkpoint's whole model (both towers, buffers)
BUNDLE_META = "bundle.json"
TOPIC_FIT = "topic_fit.json"  # in text/: the calibrated topic-fit model (clik.topic_fit)


def checkpoint_dir(run_or_checkpoint: str | Path) -> Path:
    """A training run's checkpoint folder (`RUN/checkpoint`), or the path itself when it is one."""
    path = Path(run_or_checkpoint)
    return path / "checkpoint" if (path / "checkpoint").is_dir() else path


def save_checkpoint(
    model: ClikModel, tokenizer: TopicTokenizer, directory: str | Path, extra: dict | None = None
) -> Path:
    """Write the checkpoint beside `directory`, then swap it in with two renames: a crash leaves
    the previous checkpoint whole (as `directory` or, between the two renames, as its `.old`
    sibling, which load_checkpoint falls back to), never a half-written one. Anything else in
    the old directory goes with it: a calibration fitted for old weights (topic_fit.json) must
    not describe new ones; training writes a fresh one after its last save."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        _write_json(staging / CONFIG, {"model": model.cfg.to_dict(), **(extra or {})})
        save_model(model, str(staging / CHECKPOINT_WEIGHTS))
        tokenizer.save(staging / "tokenizer")
        old = _previous(directory)
        if directory.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(staging, directory)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _previous(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.old"


def load_checkpoint(directory: str | Path, device: str = "cpu") -> tuple[ClikModel, TopicTokenizer, dict]:
    directory = Path(directory)
    if not directory.exists() and _previous(directory).exists():
        directory = _previous(directory)  # a save was interrupted between its two renames
    meta = _read_json(directory / CONFIG)
    cfg = ModelConfig.from_dict(meta.pop("model"))
    model = ClikModel(cfg, load_weights=False)
    load_model(model, str(directory / CHECKPOINT_WEIGHTS), device=device)
    tokenizer = TopicTokenizer.from_pretrained(directory / "tokenizer", max_length=cfg.text.max_length)
    _check_tokenizer_fits(model.topic.text, tokenizer, directory / "tokenizer")
    return model.to(device).eval(), tokenizer, meta


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    version: str
    embed_dim: int
    method: str
    query: str
    topic_fit: dict | None = None  # the calibrated topic-fit model (clik.topic_fit.TopicFit)


def export_bundle(
    model: ClikModel, tokenizer: TopicTokenizer, out_dir: str | Path, topic_fit: dict | None = None
) -> BundleInfo:
    """Write the split bundle atomically (a temp dir renamed into place) and return its info.

    ``topic_fit``: the calibrated topic-fit model (TopicFit.to_dict()), kept in the text side
    and covered by the version hash: a new calibration is a new version."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out_dir.parent))
    try:
        cfg = model.cfg.to_dict()
        for side, module in (("text", model.topic), ("image", model.image)):
            (staging / side).mkdir()
            _write_json(staging / side / CONFIG, {"side": side, "model": cfg})
            save_model(module, str(staging / side / WEIGHTS))
        tokenizer.save(staging / "text" / "tokenizer")
        if topic_fit is not None:
            _write_json(staging / "text" / TOPIC_FIT, topic_fit)
        version = _content_hash(staging)
        meta = {
            "version": version,
            "embed_dim": model.cfg.embed_dim,
            "method": model.cfg.method,
            "query": model.cfg.query,
            "text_tower": model.cfg.text.name,
            "image_tower": model.cfg.image.name,
        }
        _write_json(staging / BUNDLE_META, meta)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return read_bundle_info(out_dir)


def read_bundle_info(bundle_dir: str | Path) -> BundleInfo:
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / BUNDLE_META
    if not path.exists():
        raise FileNotFoundError(f"not a CLIK bundle (no {BUNDLE_META}): {bundle_dir}")
    meta = _read_json(path)
    fit_path = bundle_dir / "text" / TOPIC_FIT
    topic_fit = _read_json(fit_path) if fit_path.exists() else None
    return BundleInfo(bundle_dir, meta["version"], int(meta["embed_dim"]), meta["method"], meta["query"], topic_fit)


def load_text_side(bundle_dir: str | Path, device: str = "cpu") -> tuple[TopicSide, TopicTokenizer, BundleInfo]:
    """Only the text tower and query head: what a serving process needs."""
    info = read_bundle_info(bundle_dir)
    cfg = _side_config(info.path, "text")
    side = TopicSide(cfg, load_weights=False)
    _load_weights(side, info.path / "text" / WEIGHTS, device)
    tokenizer = TopicTokenizer.from_pretrained(info.path / "text" / "tokenizer", max_length=cfg.text.max_length)
    _check_tokenizer_fits(side.text, tokenizer, info.path / "text" / "tokenizer")
    return side.to(device).eval(), tokenizer, info


def load_image_side(bundle_dir: str | Path, device: str = "cpu") -> tuple[ImageTower, BundleInfo]:
    """Only the image tower and its projection: what an encoding worker needs."""
    info = read_bundle_info(bundle_dir)
    cfg = _side_config(info.path, "image")
    tower = ImageTower(cfg.image, cfg.embed_dim, load_weights=False, appeal_prior=cfg.appeal_prior)
    _load_weights(tower, info.path / "image" / WEIGHTS, device)
    return tower.to(device).eval(), info


def _check_tokenizer_fits(tower, tokenizer: TopicTokenizer, where: Path) -> None:
    """A tokenizer with more tokens than the tower has embedding rows (e5's 250k vocabulary put
    beside a MiniLM tower) would fail deep inside the encoder, or only on some topics: refuse it
    here, by name. (A smaller foreign vocabulary cannot be told apart by size alone.)"""
    rows = tower.backbone.get_input_embeddings().num_embeddings
    if len(tokenizer.tokenizer) > rows:
        raise ValueError(
            f"{where}: tokenizer has {len(tokenizer.tokenizer)} tokens but the text tower "
            f"{tower.cfg.name!r} embeds {rows}: the tokenizer belongs to another model"
        )


def _side_config(bundle_dir: Path, side: str) -> ModelConfig:
    meta = _read_json(bundle_dir / side / CONFIG)
    if meta.get("side") != side:
        raise ValueError(f"{bundle_dir / side} is not the {side} side of a bundle")
    return ModelConfig.from_dict(meta["model"])


def _load_weights(module: nn.Module, path: Path, device: str) -> None:
    missing, unexpected = load_model(module, str(path), strict=False, device=device)
    if missing or unexpected:
        raise ValueError(f"{path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def _content_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(file.relative_to(directory).as_posix().encode())
        digest.update(b"\0")
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())
