"""POST /rank apart from HTTP: rank images given in the request (URLs fetched now, uploads) for
a topic, the original project's TaskOperator as a service.

The images go through the image pipeline (clik.image_pipeline) from the bytes on: hashed first,
so an image whose content the store already encoded for the version reuses that vector, and the
same image given twice is encoded once; the rest are decoded, transformed and encoded in one
batch in the CPU pool. URLs are fetched on a few threads of their own, each URL's failure its
own error.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from api.fetch_limits import StoreFetchLimits
from api.loaded_models import CpuPool, ModelCache
from api.queries import RankingQueries
from api.versions import ActiveVersions
from clik.encoders import ImageEncoder
from clik.image_pipeline import ImageItem, ImagePipeline, by_digest
from clik.image_source import ImageLoadError, read_source
from clik.topic_fit import product_features, score_products
from indexer.errors import VectorNotFound
from indexer.store import VectorStore


@dataclass(frozen=True)
class RankedSource:
    index: int  # position in the request
    score: float
    rank: int
    reused: bool  # vector taken from the store
    appeal: float
    topic_fit: float
    off_topic: bool


@dataclass
class RankedSources:
    model_version: str
    items: list[RankedSource]  # best first
    errors: dict[int, str]


class SourceRanker:
    def __init__(
        self,
        store: VectorStore,
        versions: ActiveVersions,
        queries: RankingQueries,
        images: ModelCache[ImageEncoder],
        cpu: CpuPool,
        limits: StoreFetchLimits,
    ) -> None:
        self.store = store
        self.versions = versions
        self.queries = queries
        self.images = images
        self.cpu = cpu
        self.limits = limits
        self.fetchers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="clik-fetch")

    def close(self) -> None:
        self.fetchers.shutdown(wait=False, cancel_futures=True)

    def rank(
        self,
        topic: Mapping[str, object],
        urls: list[str],
        uploads: list[bytes],
        topk: int | None,
        model_version: str | None,
    ) -> RankedSources:
        """Rank the images at `urls`, then `uploads` (indices count in that order), best first;
        images that cannot be read, decoded or encoded are listed in `errors` by index."""
        version = self.versions.resolve(model_version)
        query, topic_emb = self.queries.query_and_topic(version, topic)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        datas: list[bytes | ImageLoadError] = list(self.fetchers.map(self._fetch, urls)) + list(uploads)
        errors: dict[int, str] = {i: d.reason for i, d in enumerate(datas) if isinstance(d, ImageLoadError)}
        pipeline = ImagePipeline(self.limits.current())
        items = pipeline.read([ImageItem(i, d) for i, d in enumerate(datas) if not isinstance(d, ImageLoadError)])
        vectors: dict[int, np.ndarray] = {}
        reused: set[int] = set()
        to_encode: dict[str, list[int]] = {}  # content hash -> indices (same image encoded once)
        todo: list[ImageItem] = []
        for digest, group in by_digest(items).items():
            try:
                stored = self.store.get_vector(version.name, digest).astype(np.float32)
            except VectorNotFound:
                to_encode[digest] = [item.key for item in group]
                todo.append(group[0])
                continue
            for item in group:
                vectors[item.key] = stored
                reused.add(item.key)
        if todo:
            encoder = self.images.get(version)
            for batch in pipeline.encode(
                todo,
                encoder.transform,
                lambda pixels: self.cpu.run(encoder.encode_pixels, pixels),
                batch_size=len(todo),
            ):
                for item, vec in zip(batch.items, batch.vectors):
                    for i in to_encode[item.digest]:  # type: ignore[index]
                        vectors[i] = vec
            for item in todo:
                if not item.ok:
                    for i in to_encode[item.digest]:  # type: ignore[index]
                        errors[i] = item.reason
        order = sorted(vectors)
        if not order:
            return RankedSources(version.name, [], errors)
        matrix = np.stack([vectors[i] for i in order]).astype(np.float32)
        calibration, threshold = self.queries.topic_fit_model(version)
        topic_emb = topic_emb / max(float(np.linalg.norm(topic_emb)), 1e-12)
        scored = score_products(matrix @ query, product_features(matrix, topic_emb), calibration, threshold)
        ranked = sorted(range(len(order)), key=lambda j: (-scored.score[j], order[j]))[: topk or len(order)]
        return RankedSources(
            version.name,
            [
                RankedSource(
                    order[j],
                    float(scored.score[j]),
                    r + 1,
                    order[j] in reused,
                    float(scored.appeal[j]),
                    float(scored.topic_fit[j]),
                    bool(scored.off_topic[j]),
                )
                for r, j in enumerate(ranked)
            ],
            errors,
        )

    def _fetch(self, url: str) -> bytes | ImageLoadError:
        try:
            return read_source(url, self.limits.current())
        except ImageLoadError as exc:
            return exc
        except ValueError as exc:  # bad port, non-IDNA host name...: that URL's error only
            return ImageLoadError(f"invalid URL: {exc}")
