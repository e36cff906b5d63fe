"""What the text side of a version gives a ranking: the topic's query and embedding, and the
version's topic-fit model.

One text-tower pass gives both the ranking query and the topic embedding (Topic Matching space);
they are cached together per (version, topic) (api.topics, clik.topic_cache), and the pass runs in
the CPU pool.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from api.loaded_models import CpuPool, ModelCache
from api.topics import TopicQueries
from clik import topic_cache
from clik.encoders import TopicEncoder
from clik.topic_fit import DEFAULT_FIT, TopicFit
from indexer.records import ModelVersion


class RankingQueries:
    def __init__(
        self, text: ModelCache[TopicEncoder], topics: TopicQueries, cpu: CpuPool, topic_fit_threshold: float | None
    ) -> None:
        self.text = text
        self.topics = topics
        self.cpu = cpu
        self.topic_fit_threshold = topic_fit_threshold  # CLIK_TOPIC_FIT_THRESHOLD; None: the bundle's

    def query(self, version: ModelVersion, topic: Mapping[str, object]) -> np.ndarray:
        """The topic's ranking query for `version`."""
        return self.query_and_topic(version, topic)[0]

    def query_and_topic(self, version: ModelVersion, topic: Mapping[str, object]) -> tuple[np.ndarray, np.ndarray]:
        """The ranking query and the topic embedding, cached together."""
        encoder = self.text.get(version)

        def encode(attrs: dict) -> np.ndarray:
            return topic_cache.encode_entries(encoder, [attrs])[0]

        return topic_cache.split_entry(
            self.topics.query(version.name, topic, lambda attrs: self.cpu.run(encode, attrs))
        )

    def topic_fit_model(self, version: ModelVersion) -> tuple[TopicFit, float]:
        """The version's calibrated topic-fit model (from its bundle; the prior when the bundle
        has none) and the threshold in force (CLIK_TOPIC_FIT_THRESHOLD overrides the bundle's)."""
        info = self.text.get(version).info
        calibration = TopicFit.from_dict(info.topic_fit) if info.topic_fit else DEFAULT_FIT
        threshold = self.topic_fit_threshold
        return calibration, calibration.threshold if threshold is None else threshold
