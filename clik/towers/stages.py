"""A backbone cut in two: a frozen *stem* whose output can be cached once, and a trainable *top*
(its last stages and head), for partially unlocked training (TrainConfig.mode = "partial").

Only two timm families are cut here, the ones the model configs use: EfficientNet-style
convolutional nets (conv_stem → blocks → conv_head) and Vision Transformers (patch_embed →
blocks → norm). Running stem then top gives the same pooled features as the whole backbone
(tests/clik/test_stages.py).
"""

from __future__ import annotations

import torch
from torch import nn


def _is_convnet(backbone: nn.Module) -> bool:
    return all(hasattr(backbone, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head"))


def _is_vit(backbone: nn.Module) -> bool:
    return all(hasattr(backbone, a) for a in ("patch_embed", "_pos_embed", "blocks", "norm", "forward_head"))


def stage_count(backbone: nn.Module) -> int:
    if not (_is_convnet(backbone) or _is_vit(backbone)):
        raise ValueError(
            f"partial mode cannot cut a {type(backbone).__name__}: "
            "it knows timm EfficientNet-style nets and Vision Transformers"
        )
    return len(backbone.blocks)


def _check(backbone: nn.Module, top_stages: int) -> None:
    count = stage_count(backbone)
    if not 0 <= top_stages < count:
        raise ValueError(f"top_stages must be in [0, {count - 1}] for {type(backbone).__name__} ({count} stages)")


def run_stem(backbone: nn.Module, pixels: torch.Tensor, top_stages: int) -> torch.Tensor:
    """Activations entering the last `top_stages` stages (all of `blocks` when 0: then only the
    head conv / final norm trains)."""
    _check(backbone, top_stages)
    stop = len(backbone.blocks) - top_stages
    if _is_convnet(backbone):
        x = backbone.bn1(backbone.conv_stem(pixels))
    else:
        x = backbone._pos_embed(backbone.patch_embed(pixels))
        x = backbone.norm_pre(backbone.patch_drop(x))
    for block in backbone.blocks[:stop]:
        x = block(x)
    return x


def run_top(backbone: nn.Module, activations: torch.Tensor, top_stages: int) -> torch.Tensor:
    """The pooled features from stem activations: the last `top_stages` stages, then the head."""
    _check(backbone, top_stages)
    x = activations
    for block in backbone.blocks[len(backbone.blocks) - top_stages :]:
        x = block(x)
    if _is_convnet(backbone):
        x = backbone.bn2(backbone.conv_head(x))
    else:
        x = backbone.norm(x)
    return backbone.forward_head(x, pre_logits=True)


def top_modules(backbone: nn.Module, top_stages: int) -> list[nn.Module]:
    """The modules `run_top` runs: what partial mode trains."""
    _check(backbone, top_stages)
    blocks = list(backbone.blocks[len(backbone.blocks) - top_stages :])
    head = [backbone.conv_head, backbone.bn2] if _is_convnet(backbone) else [backbone.norm]
    if hasattr(backbone, "fc_norm"):
        head.append(backbone.fc_norm)
    return blocks + head


def top_prefixes(backbone: nn.Module, top_stages: int) -> tuple[str, ...]:
    """State-dict name prefixes of the top; everything else is the stem (whose weights key the
    stem activation cache: a ViT's position embedding belongs to no module, so names, not
    modules)."""
    _check(backbone, top_stages)
    first = len(backbone.blocks) - top_stages
    blocks = tuple(f"blocks.{i}." for i in range(first, len(backbone.blocks)))
    head = ("conv_head.", "bn2.") if _is_convnet(backbone) else ("norm.", "fc_norm.", "head.")
    return blocks + head
