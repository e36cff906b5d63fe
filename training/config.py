"""Typed training configuration: YAML file, then ``key=value`` overrides from the command line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import yaml


@dataclass
class TrainConfig:
    # What to train.
    model: str = "clik-minilm-lite0"  # registry name or JSON path (clik/model_configs)
    method: Literal["clik", "triplet", "pairwise", "pointwise", "probe"] = "clik"  # probe: training/probe.py
    query: Literal["group", "virtual", "topic"] = "group"
    # None keeps the value of the model config named above.
    text_tower: str | None = None  # "minilm", "e5-small", a hub id or a local directory
    embed_dim: int | None = None
    temperature: float | None = None
    attention_temperature: float | None = None
    memory_bank_size: int | None = None
    w_match: float = 1.0
    w_rank: float = 20.0
    triplet_margin: float = 0.2
    # "locked": backbones frozen, their features cached once, only projections and heads train
    # (CPU friendly). "partial": the backbones' last stages train too, from cached activations
    # of the stages before them (CPU, minutes more; docs/training.md). "full": everything trains
    # on pixels and tokens (GPUs).
    mode: Literal["locked", "partial", "full"] = "locked"
    # Partial mode: how many of the image backbone's last stages train (besides its head conv or
    # final norm, which always do), and how many of the text encoder's last layers.
    image_top_stages: int = 1
    text_top_layers: int = 1
    # Partial mode first trains as locked mode does (`epochs`), then the tops unlock for this many
    # epochs more, from there (docs/training.md: linear probe, then fine-tune).
    partial_epochs: float = 3.0
    # Image Ranking target: "best" (the paper: the best of the K sampled images is the one
    # positive) or "listwise" (soft targets: a softmax of log1p(criterion) / listwise_temperature
    # over all K images, so every image counts by its engagement and ties share).
    ranking_loss: Literal["best", "listwise"] = "best"
    listwise_temperature: float = 0.5
    # Warm start (training/warm_start.py): a run, checkpoint or bundle whose weights training
    # starts from. The retraining cycle fine-tunes the served model on its CTR labels; None
    # starts from the pretrained backbones and fresh projections.
    init_from: str | None = None
    # Data.
    criterion: str | None = None  # None: the dataset's default criterion
    tm_batch: int = 512  # M: Topic Matching pairs per step (capped at the number of train groups)
    groups_per_batch: int = 12  # N
    images_per_group: int = 20  # K
    # Optimisation. The defaults are the best measured on a CPU with locked towers (the default
    # mode): there only small Linear layers train, and the paper's lr 1e-4 for 10 epochs leaves
    # Topic Matching at chance (docs/topic_fit.md). The paper's settings (4.3.2: 10 epochs,
    # lr 1e-4, text tower 5e-5, full fine-tuning) are configs/paper.yaml.
    epochs: float = 20.0
    lr_text: float = 5e-5
    lr: float = 1e-3
    # Pretrained image-backbone weights that train (partial and full modes): pretrained
    # convolutions want a far smaller step than freshly initialised projections.
    lr_image_backbone: float = 1e-4
    weight_decay: float = 0.1
    warmup: float = 0.01
    amp: bool = True  # bf16 autocast where the device supports it
    seed: int = 0
    device: str | None = None
    # Pointwise regresses the criterion; raw sales span orders of magnitude, so log1p by default.
    pointwise_log1p: bool = True
    # Topic-fit calibration (training/calibrate.py): the train topic groups in this many folds,
    # one calibration-only run per fold without it (locked mode), so the calibration is fitted on
    # topics its model never saw. 0: fit on the train exhibitions themselves.
    calibration_folds: int = 3
    # The appeal prior (clik/appeal.py, training/appeal.py): after training, CLIK (locked mode)
    # fits one topic-independent attractiveness direction over the frozen image features in
    # closed form and the ranking adds `appeal_weight` times it to the cosine. 0 turns it off.
    # How 1.0 was chosen, on which H&M splits: docs/training.md.
    appeal_weight: float = 1.0
    # Ridge penalty per train image on the standardised features: large, so the direction is
    # close to the features' covariance with "is the exhibition's best seller" (what generalises
    # to new topics), not a fit of the train topics.
    appeal_penalty: float = 100.0
    # Bookkeeping.
    cache_dir: str = ".cache/features"
    checkpoint_every: int = 0  # steps; 0 = at the end of every epoch
    log_every: int = 10
    feature_batch: int = 16  # small CPU batches run faster per image here (benchmarks/towers.py)
    num_threads: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in fields(TrainConfig)}
# Types of the options whose default is None.
_OPTIONAL_KINDS = {
    "embed_dim": int,
    "temperature": float,
    "attention_temperature": float,
    "memory_bank_size": int,
    "num_threads": int,
    "device": str,
    "criterion": str,
    "text_tower": str,
    "init_from": str,
}


def _coerce(name: str, raw: Any) -> Any:
    """Turn a YAML or command-line value into the field's type, with a clear error."""
    if name not in _FIELDS:
        raise ValueError(f"unknown training option {name!r}; known: {sorted(_FIELDS)}")
    default = getattr(TrainConfig(), name)
    if isinstance(raw, str):
        raw = yaml.safe_load(raw) if raw.strip() else raw
    if raw is None:
        return None
    kind = type(default) if default is not None else _OPTIONAL_KINDS.get(name)
    try:
        if kind is bool:
            if not isinstance(raw, bool):
                raise ValueError
            return raw
        if kind is int and not float(raw).is_integer():
            raise ValueError
        return kind(raw)
    except (TypeError, ValueError):
        raise ValueError(f"option {name}: cannot use {raw!r} as {kind.__name__}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, **direct: Any) -> TrainConfig:
    values: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a training config is a mapping of option: value")
        values.update({k: _coerce(k, v) for k, v in data.items()})
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        values[key.strip()] = _coerce(key.strip(), value)
    values.update({k: _coerce(k, v) for k, v in direct.items() if v is not None})
    cfg = TrainConfig(**values)
    for name, allowed in _CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"option {name}: {getattr(cfg, name)!r} is not one of {list(allowed)}")
    return cfg


_CHOICES = {
    "method": ("clik", "triplet", "pairwise", "pointwise", "probe"),
    "query": ("group", "virtual", "topic"),
    "mode": ("locked", "partial", "full"),
    "ranking_loss": ("best", "listwise"),
}
