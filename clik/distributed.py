"""Gathering tensors across DDP processes for the contrastive losses and the memory bank."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor from every process (no gradient), or return it as is."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate across processes keeping this process's slice differentiable.

    Other processes' slices are constants here; each process back-propagates through its own
    slice, and DDP averages the gradients, which gives the gradient of the global loss
    (the open_clip "local loss off, gather with grad off" arrangement).
    """
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[dist.get_rank()] = tensor
    return torch.cat(parts, dim=0)
