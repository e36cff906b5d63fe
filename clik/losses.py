"""Losses as modules: CLIK's two contrastive tasks and the paper's three baselines (4.3.3).

Every embedding argument may be unnormalised; the losses normalise where the paper uses cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class MatchingLoss(nn.Module):
    """L_matching: symmetric NT-Xent over M (topic, image) pairs; pair m is the positive of row m."""

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.temperature = temperature

    def forward(self, topic_emb: torch.Tensor, image_emb: torch.Tensor) -> torch.Tensor:
        topic = F.normalize(topic_emb, dim=-1)
        image = F.normalize(image_emb, dim=-1)
        logits = topic @ image.t() / self.temperature
        target = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


class RankingLoss(nn.Module):
    """L_ranking: for each of N groups, softmax over its K images against the group query,
    the best image (index ``positive``) as the target."""

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.temperature = temperature

    def forward(self, query: torch.Tensor, image_emb: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        # query (N, d), image_emb (N, K, d), positive (N,) long
        query = F.normalize(query, dim=-1)
        images = F.normalize(image_emb, dim=-1)
        logits = torch.einsum("nd,nkd->nk", query, images) / self.temperature
        return F.cross_entropy(logits, positive)


class ListwiseRankingLoss(nn.Module):
    """L_ranking with soft targets: for each group, cross-entropy between the softmax of its K
    images' scores and the softmax of their engagement, log1p(criterion - group minimum) /
    target_temperature. Every image counts by how well it did, equal values get equal weight
    (ties need no rule), and the group's worst image (an off-topic one when there is one) weighs
    least."""

    def __init__(self, temperature: float = 0.07, target_temperature: float = 0.5):
        super().__init__()
        self.temperature = temperature
        self.target_temperature = target_temperature

    def forward(self, query: torch.Tensor, image_emb: torch.Tensor, criterion: torch.Tensor) -> torch.Tensor:
        query = F.normalize(query, dim=-1)
        images = F.normalize(image_emb, dim=-1)
        logits = torch.einsum("nd,nkd->nk", query, images) / self.temperature
        shifted = criterion - criterion.min(dim=1, keepdim=True).values
        target = torch.softmax(torch.log1p(shifted.to(logits.dtype)) / self.target_temperature, dim=1)
        return -(target * torch.log_softmax(logits, dim=1)).sum(1).mean()


@dataclass
class ClikLossOutput:
    total: torch.Tensor
    matching: torch.Tensor
    ranking: torch.Tensor


class ClikLoss(nn.Module):
    """L = w_match * L_matching + w_rank * L_ranking.

    The paper sets w_rank = 20 (and w_match = 1); the original code put the 20 on matching.
    Both weights are configurable (LossConfig).
    """

    def __init__(
        self,
        temperature: float = 0.07,
        w_match: float = 1.0,
        w_rank: float = 20.0,
        listwise_temperature: float | None = None,
    ):
        super().__init__()
        self.matching = MatchingLoss(temperature)
        # None: the paper's best-of-K target; a number: ListwiseRankingLoss with that temperature.
        self.ranking: nn.Module = (
            RankingLoss(temperature)
            if listwise_temperature is None
            else ListwiseRankingLoss(temperature, listwise_temperature)
        )
        self.w_match = w_match
        self.w_rank = w_rank

    def forward(self, topic_emb, image_emb, query, group_image_emb, positive, criterion=None) -> ClikLossOutput:
        matching = self.matching(topic_emb, image_emb)
        if isinstance(self.ranking, ListwiseRankingLoss):
            ranking = self.ranking(query, group_image_emb, criterion)
        else:
            ranking = self.ranking(query, group_image_emb, positive)
        return ClikLossOutput(self.w_match * matching + self.w_rank * ranking, matching, ranking)


class TripletLoss(nn.Module):
    """max(||z^S - z^I_pos||^2 - ||z^S - z^I_neg||^2 + margin, 0), topic as anchor, on unit vectors."""

    def __init__(self, margin: float = 0.2):
        super().__init__()
        self.margin = margin

    def forward(self, topic_emb: torch.Tensor, pos_emb: torch.Tensor, neg_emb: torch.Tensor) -> torch.Tensor:
        topic = F.normalize(topic_emb, dim=-1)
        d_pos = (topic - F.normalize(pos_emb, dim=-1)).pow(2).sum(-1)
        d_neg = (topic - F.normalize(neg_emb, dim=-1)).pow(2).sum(-1)
        return F.relu(d_pos - d_neg + self.margin).mean()


class PairwiseLoss(nn.Module):
    """RankNet: BCE on sigmoid(c_i - c_j), y = 1 if criterion_i > criterion_j, 0 if smaller.

    Ties (equal criterion) get y = 0.5, i.e. no preference; the paper's sampler never meets them.
    """

    def forward(
        self, score_i: torch.Tensor, score_j: torch.Tensor, crit_i: torch.Tensor, crit_j: torch.Tensor
    ) -> torch.Tensor:
        target = (crit_i > crit_j).to(score_i.dtype) + 0.5 * (crit_i == crit_j).to(score_i.dtype)
        return F.binary_cross_entropy_with_logits(score_i - score_j, target)


class PointwiseLoss(nn.Module):
    """Mean squared error between the predicted score and the criterion value."""

    def forward(self, score: torch.Tensor, criterion: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(score, criterion.to(score.dtype))
