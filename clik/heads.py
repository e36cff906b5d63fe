"""CLIK's auxiliary modules (paper 3.4.1): Memory Bank, Attention, Aggregation, Group Query.

All work on L2-normalised embeddings, since every score in CLIK is a cosine similarity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import QueryVariant
from .distributed import all_gather_no_grad


class MemoryBank(nn.Module):
    """A FIFO buffer of recent image embeddings from Topic Matching (MoCo-style queue).

    Refreshed every training step with that step's image embeddings, detached; under DDP the
    embeddings of every process are gathered first, so all replicas hold the same bank.
    The bank is part of the state dict: an exported model answers with the bank it trained with.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("bank", F.normalize(torch.randn(size, dim), dim=-1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.bank.shape[0]

    @torch.no_grad()
    def update(self, image_emb: torch.Tensor) -> None:
        emb = F.normalize(all_gather_no_grad(image_emb.detach()).to(self.bank.dtype), dim=-1)
        if emb.shape[0] >= self.size:
            self.bank.copy_(emb[-self.size :])
            self.ptr.zero_()
            return
        start = int(self.ptr)
        idx = (torch.arange(emb.shape[0], device=self.bank.device) + start) % self.size
        self.bank[idx] = emb
        self.ptr.fill_((start + emb.shape[0]) % self.size)


class Attention(nn.Module):
    """Dot-product attention: the topic embedding is the query, the memory bank keys and values.

    Returns the Virtual Image embedding z^V = sum_j softmax(z^S . m_j / t)_j m_j.
    """

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, topic: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(topic @ bank.t() / self.temperature, dim=-1)
        return weights @ bank


class Aggregation(nn.Module):
    """One Linear layer over concat(topic, virtual image) → group query (paper 4.3.2)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, topic: torch.Tensor, virtual: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cat([topic, virtual], dim=-1))


class QueryHead(nn.Module):
    """Builds the ranking query from a topic embedding, in one of the Table 3 variants.

    ``group``: Aggregation(z^S, Attention(z^S, bank)) (CLIK); ``virtual``: the virtual image alone;
    ``topic``: the topic embedding itself (the variant that hits the pairing contradiction).
    """

    def __init__(self, dim: int, bank_size: int, variant: QueryVariant = "group", attention_temperature: float = 1.0):
        super().__init__()
        self.variant = variant
        self.memory_bank = MemoryBank(bank_size, dim)
        self.attention = Attention(attention_temperature)
        self.aggregation = Aggregation(dim)

    def forward(self, topic_emb: torch.Tensor) -> torch.Tensor:
        topic = F.normalize(topic_emb, dim=-1)
        if self.variant == "topic":
            return topic
        # A copy: the bank is refreshed in place after the loss, before backward runs.
        bank = self.memory_bank.bank.to(topic.dtype, copy=True)
        virtual = self.attention(topic, bank)
        if self.variant == "virtual":
            return F.normalize(virtual, dim=-1)
        return F.normalize(self.aggregation(topic, virtual), dim=-1)


class ScoreHead(nn.Module):
    """Linear(concat(topic, image)) → one score: the pairwise and pointwise baselines (4.3.3)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(2 * dim, 1)

    def forward(self, topic: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        # topic (N, d), images (N, K, d) → scores (N, K)
        topic = F.normalize(topic, dim=-1).unsqueeze(1).expand_as(images)
        return self.linear(torch.cat([topic, F.normalize(images, dim=-1)], dim=-1)).squeeze(-1)


class LinearQuery(nn.Module):
    """The linear probe's query (training/probe.py, fitted in closed form): an affine map of the
    unit topic embedding, so the probe ranks by cosine like every other method."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, topic_emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(F.normalize(topic_emb, dim=-1)), dim=-1)
