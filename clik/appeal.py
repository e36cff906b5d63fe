"""The appeal prior: one coordinate of the embedding space that says how attractive an image
looks to shoppers whatever the topic, so a ranking query can weigh it without learning it anew
for every topic.

Why: on held-out H&M topic groups a single direction over the frozen backbone features, fitted
in closed form with heavy shrinkage on the train exhibitions (training/appeal.py), orders the
on-topic products better than CLIK's learned, topic-dependent query does (docs/training.md);
the 128-d projections, trained for Topic Matching and the train topics, keep too little of it.

How it travels: every vector stays a unit vector, so the stores, the indexes and the API rank
with it unchanged. With ``a`` the prior clipped to [-1, 1] and ``EPSILON`` its share:

    image  v = [sqrt(1 - (EPSILON a)^2) * unit(P f + c),  EPSILON a]      (the last coordinate)
    topic  t = [unit(T s + d), 0]                                          (Topic Matching unchanged)
    query  q = [sqrt(1 - beta^2) * unit(q_learned),  beta]

so q . v = sqrt(1 - beta^2) sqrt(1 - (EPSILON a)^2) cos + beta EPSILON a: CLIK's cosine plus
``weight`` * a, with beta = weight / sqrt(EPSILON^2 + weight^2). Until a prior is fitted the
coordinate and beta are 0 and the model ranks by its cosine alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# The coordinate's share of an image vector: at the clip (|a| = 1) the cosine part keeps
# sqrt(1 - 0.25) = 87% of its length, at a typical |a| of 0.3 about 99%.
EPSILON = 0.5


def query_share(weight: float) -> float:
    """beta, the query's last coordinate, for an appeal worth `weight` times the cosine."""
    if weight < 0:
        raise ValueError("the appeal weight must be >= 0")
    return weight / math.sqrt(EPSILON**2 + weight**2)


class AppealCoordinate(nn.Module):
    """a(f) = clip(f . weight + bias, -1, 1) over the pooled backbone feature f; zero until fitted.

    weight and bias already hold the standardisation of the features and the scale that puts
    three standard deviations of the train images' prior at the clip."""

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(width))
        self.register_buffer("bias", torch.zeros(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features @ self.weight.to(features.dtype) + self.bias.to(features.dtype)).clamp(-1.0, 1.0)

    @torch.no_grad()
    def set(self, weight: torch.Tensor, bias: float) -> None:
        self.weight.copy_(weight)
        self.bias.fill_(bias)


def image_vector(learned: torch.Tensor, appeal: torch.Tensor) -> torch.Tensor:
    """The unit image vector: the learned projection's direction, then the appeal coordinate."""
    coordinate = EPSILON * appeal.unsqueeze(-1)
    return torch.cat([F.normalize(learned, dim=-1) * torch.sqrt(1.0 - coordinate**2), coordinate], dim=-1)


def topic_vector(learned: torch.Tensor) -> torch.Tensor:
    """A topic embedding in the same space: nothing on the appeal coordinate."""
    return F.pad(learned, (0, 1))


def ranking_query(learned: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """The unit query: the learned query's direction over the other coordinates, `share` on the
    appeal coordinate (the query head's own last coordinate is replaced)."""
    share = share.to(learned.dtype)
    rest = F.normalize(learned[..., :-1], dim=-1) * torch.sqrt(1.0 - share**2)
    return torch.cat([rest, share.expand(*learned.shape[:-1], 1)], dim=-1)
