"""One training objective per method, computed from embeddings.

Taking embeddings (not pixels or tokens) lets the trainer feed either full towers or cached
backbone features through the projections (locked-tower mode) with the same objective.

Batch shapes: Topic Matching has M (topic, image) pairs from M different topics; Image Ranking
has N groups of K images each, with ``positive`` the index of each group's best image and
``criterion`` (N, K) the engagement values the baselines learn from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import LossConfig
from .distributed import all_gather_with_grad
from .losses import ClikLoss, PairwiseLoss, PointwiseLoss, TripletLoss
from .model import ClikModel


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    parts: dict[str, float]


def sample_pairs(
    criterion: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two distinct random images per group, (i, j) as index tensors of shape (N,)."""
    n, k = criterion.shape
    first = torch.randint(0, k, (n,), generator=generator)
    offset = torch.randint(1, k, (n,), generator=generator)
    return first, (first + offset) % k


class Objective:
    def __init__(self, model: ClikModel, loss_cfg: LossConfig | None = None):
        self.model = model
        self.cfg = loss_cfg or LossConfig()
        self.method = model.cfg.method
        listwise = self.cfg.listwise_temperature if self.cfg.ranking_loss == "listwise" else None
        self.clik = ClikLoss(model.cfg.temperature, self.cfg.w_match, self.cfg.w_rank, listwise)
        self.triplet = TripletLoss(self.cfg.triplet_margin)
        self.pairwise = PairwiseLoss()
        self.pointwise = PointwiseLoss()

    @property
    def uses_topic_matching(self) -> bool:
        return self.method == "clik"

    def __call__(
        self,
        topic_ir: torch.Tensor,
        images_ir: torch.Tensor,
        positive: torch.Tensor,
        criterion: torch.Tensor,
        topic_tm: torch.Tensor | None = None,
        image_tm: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ObjectiveOutput:
        if self.method == "clik":
            if topic_tm is None or image_tm is None:
                raise ValueError("CLIK needs a Topic Matching batch")
            query = self.model.ranking_query(topic_ir)
            out = self.clik(
                all_gather_with_grad(topic_tm), all_gather_with_grad(image_tm), query, images_ir, positive, criterion
            )
            # After the loss (MoCo order): this step's queries used the bank of earlier steps.
            self.model.topic.query_head.memory_bank.update(image_tm)
            return ObjectiveOutput(out.total, {"matching": out.matching.item(), "ranking": out.ranking.item()})
        rows = torch.arange(images_ir.shape[0])
        if self.method == "triplet":
            i, j = sample_pairs(criterion, generator)
            swap = criterion[rows, i] < criterion[rows, j]
            pos, neg = torch.where(swap, j, i), torch.where(swap, i, j)
            loss = self.triplet(topic_ir, images_ir[rows, pos], images_ir[rows, neg])
            return ObjectiveOutput(loss, {"triplet": loss.item()})
        scores = self.model.topic.score_head(topic_ir, images_ir)
        if self.method == "pairwise":
            i, j = sample_pairs(criterion, generator)
            loss = self.pairwise(scores[rows, i], scores[rows, j], criterion[rows, i], criterion[rows, j])
            return ObjectiveOutput(loss, {"pairwise": loss.item()})
        loss = self.pointwise(scores, criterion)
        return ObjectiveOutput(loss, {"pointwise": loss.item()})
