"""The CLIK model: dual encoders plus the query head, and the baselines sharing its towers.

Every method ranks the same way at serving time: a query vector built from the topic, scored
by cosine against each image embedding. That is what lets the indexer rank cached vectors for
any trained method with one kernel:
- clik: the group query (or the virtual-image / topic variant of Table 3);
- triplet: the topic embedding (its score -||z^S - z^I||^2 is 2cos - 2 on unit vectors);
- pairwise / pointwise: Linear(concat(z^S, z^I)) = w_S.z^S + w_I.z^I + b, whose order over the
  images of one topic is the order of w_I.z^I, so the query is w_I (the topic only shifts all
  scores by the same amount: the baselines' blindness to the topic, which the paper observes);
- probe: the linear probe's query, an affine map of the unit topic embedding fitted in closed
  form by training/probe.py (its score w.z + z^T M c is z . q(topic)).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import appeal
from .config import ModelConfig, get_model_config
from .heads import LinearQuery, QueryHead, ScoreHead
from .towers import ImageTower, TextTower


class TopicSide(nn.Module):
    """Everything that turns a topic into a ranking query: what the API loads."""

    def __init__(self, cfg: ModelConfig, load_weights: bool = True):
        super().__init__()
        self.cfg = cfg
        if not load_weights and cfg.text.hf_config is None:
            cfg.text.pretrained = False
        self.text = TextTower(cfg.text, cfg.embed_dim, appeal_prior=cfg.appeal_prior)
        self.query_head = QueryHead(cfg.embed_dim, cfg.memory_bank_size, cfg.query, cfg.attention_temperature)
        self.score_head = ScoreHead(cfg.embed_dim) if cfg.method in ("pairwise", "pointwise") else None
        self.probe_head = LinearQuery(cfg.embed_dim) if cfg.method == "probe" else None
        if cfg.appeal_prior:
            # beta of clik/appeal.py: 0 (rank by the cosine alone) until a prior is fitted.
            self.register_buffer("appeal_share", torch.zeros(()))

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.text(input_ids, attention_mask)

    def ranking_query(self, topic_emb: torch.Tensor) -> torch.Tensor:
        """Unit query vector(s) whose cosine with an image embedding orders the images."""
        if self.cfg.method == "clik":
            query = self.query_head(topic_emb)
            return appeal.ranking_query(query, self.appeal_share) if self.cfg.appeal_prior else query
        if self.cfg.method == "triplet":
            return F.normalize(topic_emb, dim=-1)
        if self.probe_head is not None:
            return self.probe_head(topic_emb)
        image_weight = self.score_head.linear.weight[0, self.cfg.embed_dim :]
        return F.normalize(image_weight, dim=0).expand(topic_emb.shape[0], -1)


class ClikModel(nn.Module):
    """Topic side + image side. The split is the bundle split: see ``clik.checkpoint``."""

    def __init__(self, cfg: ModelConfig, load_weights: bool = True):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.topic = TopicSide(cfg, load_weights=load_weights)
        self.image = ImageTower(cfg.image, cfg.embed_dim, load_weights=load_weights, appeal_prior=cfg.appeal_prior)

    def encode_topics(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.topic.encode(input_ids, attention_mask)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image(pixels)

    def ranking_query(self, topic_emb: torch.Tensor) -> torch.Tensor:
        return self.topic.ranking_query(topic_emb)

    @staticmethod
    def score(query: torch.Tensor, image_emb: torch.Tensor) -> torch.Tensor:
        """Cosine scores: query (N, d) with images (N, K, d) → (N, K)."""
        return torch.einsum("nd,nkd->nk", F.normalize(query, dim=-1), F.normalize(image_emb, dim=-1))


def create_model(
    config: str | Path | ModelConfig = "clik-minilm-lite0", load_weights: bool = True, **overrides
) -> ClikModel:
    """A model from a registry name, a JSON path or a ModelConfig; top-level fields overridable."""
    cfg = config if isinstance(config, ModelConfig) else get_model_config(config)
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise ValueError(f"unknown model config field {key!r}")
        setattr(cfg, key, value)
    return ClikModel(cfg, load_weights=load_weights)
