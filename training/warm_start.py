"""Start training from a model that already exists instead of from fresh projections: the
retraining cycle fine-tunes the model that served on what its shoppers clicked
(docs/experiments.md). A dozen clicks per exhibition are too few to learn the ranking again
from scratch, but enough to move a model that already ranks well.

`init_from` is a training run (its `checkpoint/`), a checkpoint directory, or an exported
bundle (`bundle.json`: the text and image sides together are the whole model). Its model
config must be the one being trained: a warm start cannot change the architecture.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

import clik
from clik.checkpoint import BUNDLE_META, CHECKPOINT_WEIGHTS, CONFIG, WEIGHTS, checkpoint_dir


def _model_config(path: Path) -> dict:
    return json.loads(path.read_text())["model"]


def source_model_config(path: str | Path) -> dict:
    """The model config (as a dict) of a run, checkpoint or bundle, without loading weights."""
    path = Path(path)
    if (path / BUNDLE_META).exists():
        return _model_config(path / "text" / CONFIG)
    checkpoint = checkpoint_dir(path)
    if not (checkpoint / CONFIG).exists():
        raise FileNotFoundError(f"init_from {path}: not a training run, checkpoint or bundle")
    return _model_config(checkpoint / CONFIG)


def _source_state(path: Path) -> tuple[dict, dict]:
    """(model config as a dict, state dict) of a run, checkpoint or bundle."""
    config = source_model_config(path)
    if (path / BUNDLE_META).exists():
        state: dict = {}
        for side, module in (("text", "topic"), ("image", "image")):
            state.update({f"{module}.{k}": v for k, v in load_file(str(path / side / WEIGHTS)).items()})
        return config, state
    checkpoint = checkpoint_dir(path)
    if not (checkpoint / CHECKPOINT_WEIGHTS).exists():
        raise FileNotFoundError(f"init_from {path}: not a training run, checkpoint or bundle")
    return config, load_file(str(checkpoint / CHECKPOINT_WEIGHTS))


def load_initial_weights(model: clik.ClikModel, path: str | Path) -> None:
    """Copy the weights (and buffers: the memory bank) of `path` into `model`."""
    config, state = _source_state(Path(path))
    trained = model.cfg.to_dict()
    # the shapes are checked by load_state_dict; these decide what the weights mean
    differ = [k for k in _SAME if _field(config, k) != _field(trained, k)]
    if differ:
        raise ValueError(f"init_from {path}: its model differs from the one trained in {', '.join(differ)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"init_from {path} does not fit the model: {exc}") from None


_SAME = ("method", "query", "embed_dim", "memory_bank_size", "image.name", "text.name", "appeal_prior")


def _field(config: dict, dotted: str) -> object:
    for part in dotted.split("."):
        config = config.get(part, {}) if isinstance(config, dict) else {}
    return config
