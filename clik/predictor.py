"""``Predictor``: the library entry point (the original project's TaskOperator).

    predictor = Predictor.load("bundles/my-model")
    result = predictor({"name": "Cropped sweatshirt for women", "kwds": "cropped,sweatshirt"},
                       ["a.jpg", "https://.../b.jpg", pil_image, numpy_array], topk=3)
    result.indices, result.scores, result.errors
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .image_source import DEFAULT_LIMITS, FetchLimits, ImageInput
from .runtime import ImageEncoder, TopicEncoder


@dataclass
class Ranking:
    """Images ranked best first; ``indices`` point into the caller's list."""

    indices: list[int]
    scores: list[float]
    errors: dict[int, str] = field(default_factory=dict)
    model_version: str = ""

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

    @classmethod
    def load(cls, bundle_dir: str | Path, device: str | None = None, batch_size: int = 16, limits: FetchLimits = DEFAULT_LIMITS) -> "Predictor":
        return cls(
            TopicEncoder.load(bundle_dir, device=device),
            ImageEncoder.load(bundle_dir, device=device, batch_size=batch_size, limits=limits),
        )

    @property
    def version(self) -> str:
        return self.topic_encoder.version

    def __call__(self, topic: Mapping[str, Any], images: Sequence[ImageInput], topk: int | None = None) -> Ranking:
        if topk is not None and topk < 1:
            raise ValueError("topk must be at least 1")
        query = self.topic_encoder.query(topic)
        encoded = self.image_encoder.encode(images)
        scores = encoded.vectors @ query
        order = np.argsort(-scores, kind="stable")[: topk or len(scores)]
        return Ranking(
            indices=[encoded.indices[i] for i in order],
            scores=[float(scores[i]) for i in order],
            errors=encoded.errors,
            model_version=self.version,
        )
