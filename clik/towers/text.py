"""Text tower: any transformers encoder, pooled, projected to the shared embedding size."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
from transformers.utils import logging as hf_logging

from ..appeal import topic_vector
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


def _clip_text(source: str, pretrained: bool) -> tuple[nn.Module, torch.Tensor]:
    """A CLIP model's text transformer and its text projection (from a full CLIP directory or
    hub id, or a text-only one)."""
    if pretrained:
        full = CLIPTextModelWithProjection.from_pretrained(source)
    else:
        full = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(source))
    # The backbone is a plain CLIPTextModel, what a checkpoint's saved config rebuilds.
    backbone = CLIPTextModel(full.config)
    backbone.load_state_dict(full.text_model.state_dict())
    return backbone, full.text_projection.weight.detach()


class TextTower(nn.Module):
    def __init__(self, cfg: TextTowerConfig, embed_dim: int, appeal_prior: bool = False):
        super().__init__()
        self.cfg = cfg
        projection = None
        if cfg.hf_config is not None:
            # Rebuilding from a checkpoint: the architecture comes from the saved config, the
            # weights from the checkpoint, so no hub and no wheel is needed.
            self.backbone = _encoder_from_config(AutoConfig.for_model(**cfg.hf_config))
        else:
            source = resolve_text_tower(cfg.name)
            if cfg.architecture == "clip":
                self.backbone, projection = _clip_text(source, cfg.pretrained)
            elif cfg.pretrained:
                self.backbone = _encoder_from_pretrained(source)
            else:
                self.backbone = _encoder_from_config(AutoConfig.from_pretrained(source))
            cfg.hf_config = self.backbone.config.to_dict()
        # With the appeal prior a topic has nothing on the last coordinate (clik/appeal.py).
        self.appeal_prior = appeal_prior
        self.proj = nn.Linear(self.backbone.config.hidden_size, embed_dim - 1 if appeal_prior else embed_dim)
        if projection is not None:
            if projection.shape != self.proj.weight.shape:
                raise ValueError(
                    f"{cfg.name}: its text projection maps to {projection.shape[0]} dimensions; "
                    f"set embed_dim to {projection.shape[0]}"
                )
            with torch.no_grad():  # CLIP's projection has no bias
                self.proj.weight.copy_(projection)
                self.proj.bias.zero_()
        if cfg.freeze_word_embeddings:
            self.backbone.get_input_embeddings().requires_grad_(False)

    @property
    def width(self) -> int:
        return self.backbone.config.hidden_size

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled backbone output, before the projection (what locked-tower training caches)."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        if self.cfg.pooling == "eos":  # CLIP: the final-norm state at each row's end-of-text token
            return out.pooler_output
        return self._pool(out.last_hidden_state, attention_mask)

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.cfg.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    @property
    def layers(self) -> nn.ModuleList:
        """The encoder's transformer layers (BERT-style encoders: MiniLM, e5)."""
        encoder = getattr(self.backbone, "encoder", None)
        if encoder is None or not hasattr(encoder, "layer"):
            raise ValueError(f"partial mode cannot cut a {type(self.backbone).__name__}: it needs encoder.layer")
        return encoder.layer

    def hidden_before(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, top_layers: int) -> torch.Tensor:
        """Hidden states entering the last `top_layers` layers (what partial mode caches)."""
        if not 0 <= top_layers < len(self.layers):
            raise ValueError(f"top_layers must be in [0, {len(self.layers) - 1}]")
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.hidden_states[len(out.hidden_states) - 1 - top_layers]

    def features_from_hidden(self, hidden: torch.Tensor, attention_mask: torch.Tensor, top_layers: int) -> torch.Tensor:
        """Pooled features from `hidden_before` states: the last `top_layers` layers, then pooling."""
        # An additive mask, the form every attention implementation of transformers accepts.
        additive = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in self.layers[len(self.layers) - top_layers :]:
            out = layer(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out
        return self._pool(hidden, attention_mask)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features → topic embedding."""
        embedding = self.proj(features)
        return topic_vector(embedding) if self.appeal_prior else embedding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(input_ids, attention_mask))
