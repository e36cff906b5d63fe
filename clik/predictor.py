"""``Predictor``: the library entry point (the original project's TaskOperator).

predictor = Predictor.load("bundles/my-model")
result = predictor({"name": "Cropped sweatshirt for women", "kwds": "cropped,sweatshirt"},
                   ["a.jpg", "https://.../b.jpg", pil_image, numpy_array], topk=3)
result.indices, result.scores, result.errors
result.appeal, result.topic_fit, result.off_topic     # the explained score, as the service gives it
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .image_source import DEFAULT_LIMITS, FetchLimits, ImageInput
from .encoders import ImageEncoder, TopicEncoder
from .topic_fit import DEFAULT_FIT, TopicFit, product_features, score_products


@dataclass
class ImageRanking:
    """Images ranked best first; ``indices`` point into the caller's list. ``scores`` order the
    ranking (clik.topic_fit.score_products); ``appeal`` is CLIK's ranking score, ``topic_fit``
    the calibrated probability of belonging to the topic, ``off_topic`` the flag."""

    indices: list[int]
    scores: list[float]
    errors: dict[int, str] = field(default_factory=dict)
    model_version: str = ""
    appeal: list[float] = field(default_factory=list)
    topic_fit: list[float] = field(default_factory=list)
    off_topic: list[bool] = field(default_factory=list)

    def __iter__(self):
        return iter(zip(self.indices, self.scores))


class Predictor:
    def __init__(self, topic_encoder: TopicEncoder, image_encoder: ImageEncoder):
        if topic_encoder.version != image_encoder.version:
            raise ValueError(
                f"text side {topic_encoder.version} and image side {image_encoder.version} come from different bundles"
            )
        self.topic_encoder = topic_encoder
        self.image_encoder = image_encoder
        info = topic_encoder.info.topic_fit
        self.topic_fit = TopicFit.from_dict(info) if info else DEFAULT_FIT

    @classmethod
    def load(
        cls,
        bundle_dir: str | Path,
        device: str | None = None,
        batch_size: int = 16,
        limits: FetchLimits = DEFAULT_LIMITS,
    ) -> "Predictor":
        return cls(
            TopicEncoder.load(bundle_dir, device=device),
            ImageEncoder.load(bundle_dir, device=device, batch_size=batch_size, limits=limits),
        )

    @property
    def version(self) -> str:
        return self.topic_encoder.version

    def __call__(self, topic: Mapping[str, Any], images: Sequence[ImageInput], topk: int | None = None) -> ImageRanking:
        if topk is not None and topk < 1:
            raise ValueError("topk must be at least 1")
        topic_emb, query = (x[0] for x in self.topic_encoder.embeddings_and_queries([topic]))
        encoded = self.image_encoder.encode(images)
        scored = score_products(encoded.vectors @ query, product_features(encoded.vectors, topic_emb), self.topic_fit)
        order = np.argsort(-scored.score, kind="stable")[: topk or len(scored.score)]
        return ImageRanking(
            indices=[encoded.indices[i] for i in order],
            scores=[float(scored.score[i]) for i in order],
            errors=encoded.errors,
            model_version=self.version,
            appeal=[float(scored.appeal[i]) for i in order],
            topic_fit=[float(scored.topic_fit[i]) for i in order],
            off_topic=[bool(scored.off_topic[i]) for i in order],
        )
