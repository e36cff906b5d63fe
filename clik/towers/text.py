"""Text tower: any transformers encoder, pooled, projected to the shared embedding size."""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel
from transformers.utils import logging as hf_logging

from ..config import TextTowerConfig
from ..pretrained import resolve_text_tower


def _encoder_from_pretrained(source: str) -> nn.Module:
    # The pooler of BERT-like models is unused (we pool ourselves); dropping it avoids
    # "weights not used" noise and dead parameters. Encoders without a pooler take no such flag.
    # The load report would list the dropped pooler as "unexpected" keys: expected here.
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModel.from_pretrained(source, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_pretrained(source)
    finally:
        hf_logging.set_verbosity(previous)


def _encoder_from_config(config) -> nn.Module:
    try:
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(config)


class TextTower(nn.Module):
    def __init__(self, cfg: TextTowerConfig, embed_dim: int):
        super().__init__()
        self.cfg = cfg
        if cfg.hf_config is not None:
            # Rebuilding from a checkpoint: the architecture comes from the saved config, the
            # weights from the checkpoint, so no hub and no wheel is needed.
            self.backbone = _encoder_from_config(AutoConfig.for_model(**cfg.hf_config))
        else:
            source = resolve_text_tower(cfg.name)
            if cfg.pretrained:
                self.backbone = _encoder_from_pretrained(source)
            else:
                self.backbone = _encoder_from_config(AutoConfig.from_pretrained(source))
            cfg.hf_config = self.backbone.config.to_dict()
        self.proj = nn.Linear(self.backbone.config.hidden_size, embed_dim)
        if cfg.freeze_word_embeddings:
            self.backbone.get_input_embeddings().requires_grad_(False)

    @property
    def width(self) -> int:
        return self.backbone.config.hidden_size

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled backbone output, before the projection (what locked-tower training caches)."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.cfg.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(input_ids, attention_mask))
