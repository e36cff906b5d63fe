"""What the routes do, apart from HTTP: version resolution, model sides, rankings, /rank.

Everything here is synchronous and runs in the request threadpool; model computations go
through the CPU pool (a few at a time), product images through the image proxy's own threads.
"""
from __future__ import annotations

import gc
import hashlib
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Mapping

import numpy as np
from PIL import Image

from api.answers import RenderedAnswers
from api.catalogue import CatalogueSearch, default_catalogue_dir
from api.coverage import CoverageMonitor
from api.encode_queue import EncodeQueue
from api.errors import ImageUnavailable, ModelUnavailable, VersionMismatch
from api.image_proxy import ImageProxy
from api.metrics import ApiMetrics
from api.loaded_models import CpuPool, ModelCache
from api.settings import ApiSettings
from api.explained import ExplainedRanking, explain
from api.merch import MerchState, Overrides, facet_of
from api.merch_rank import Aligned, Rules, align
from api.per_block_cache import PerBlockCache
from clik import topic_cache
from clik.diverse import DiverseOptions
from indexer.packed_block import ScoringBlock
from api.topics import TopicQueries, cache_key, clean_topic
from clik.image_pipeline import ImageItem, ImagePipeline, by_digest
from clik.image_source import FetchLimits, ImageLoadError, read_source
from clik.encoders import ImageEncoder, TopicEncoder
from clik.topic_fit import DEFAULT_FIT, TopicFit, product_features, score_products
from indexer.errors import InvalidInput, InvalidVector, StoreError, VectorNotFound
from indexer.records import ModelVersion, Product, ProductStatus
from indexer.store import VectorStore
from indexer.store_settings import stored_file_roots


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


def answer_etag(exhibition_id: str, version: str, stamp: str, overrides_at: float | None, threshold: float,
                offset: int, limit: int, diverse: bool, settings_digest: str) -> str:
    """A ranking answer is a pure function of these: the exhibition, the model version (its
    calibration with it), the block stamp (products, attrs, vectors, the exhibition's members
    and topic: generations, not unique across exhibitions), the overrides' last change, the
    threshold, the page and the settings. Any change of one changes the tag; the same state
    gives the same tag in every API process."""
    text = (f"{exhibition_id}|{version}|{stamp}|{overrides_at}|{threshold}|{offset}|{limit}|{int(diverse)}|"
            f"{settings_digest}")
    return '"' + hashlib.blake2b(text.encode(), digest_size=12).hexdigest() + '"'


class ClikService:
    def __init__(self, settings: ApiSettings, store: VectorStore, queue: EncodeQueue,
                 metrics: ApiMetrics) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.metrics = metrics
        self._roots_read_at = -1e9
        self._limits = settings.fetch_limits()
        device = settings.device
        self.text = ModelCache(lambda b: TopicEncoder.load(b, device=device),
                               settings.max_loaded_models, "text side")
        # the image tower is only for POST /rank: loaded on first use
        self.images = ModelCache(lambda b: ImageEncoder.load(b, device=device, limits=self.limits),
                                 settings.max_loaded_models, "image side")
        self.cpu = CpuPool(settings.cpu_workers)
        self.fetchers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="clik-fetch")
        self.image_proxy = ImageProxy(settings.image_proxy_concurrency, settings.image_proxy_queue,
                                      settings.image_proxy_wait_s)
        # Cached entries hold the ranking query and the topic embedding (clik.topic_cache).
        self.topics = TopicQueries(store, settings.topic_cache_size, namespace=topic_cache.NAMESPACE,
                                   on_lookup=lambda r: metrics.topic_cache.labels(r).inc())
        self.fits = PerBlockCache(64 * 1024 * 1024)  # each block scored for a topic
        self.merch = MerchState(store, settings.merch_cache_s)
        self.aligned = PerBlockCache(16 * 1024 * 1024)  # each block's business-rule facets
        self.diverse_options = DiverseOptions(settings.diverse_trade_off, settings.diverse_duplicate_threshold,
                                              settings.diverse_pool)
        self._active_guess: ModelVersion | None = None  # the active version seen last (see _ranked)
        self.load_errors: dict[str, str] = {}  # version -> why its background load failed
        self.coverage = CoverageMonitor(store, settings.coverage_refresh_s)
        self._settings_digest: str | None = None
        self.answers = RenderedAnswers()
        self._background: set[str] = set()
        self._background_lock = threading.Lock()
        self.catalogue = CatalogueSearch(
            store, settings.catalogue_dir or default_catalogue_dir(settings.store_url, settings.store_prefix),
            settings.catalogue_min_rebuild_s)

    def load_in_background(self, version: ModelVersion) -> None:
        """Start loading a version's text side (readiness, start-up) without waiting for it."""
        with self._background_lock:
            if version.name in self._background:
                return
            self._background.add(version.name)

        def load() -> None:
            try:
                self.text.get(version)
                self.load_errors.pop(version.name, None)
                self.freeze_heap()
            except Exception as exc:
                self.load_errors[version.name] = str(exc)
            finally:
                with self._background_lock:
                    self._background.discard(version.name)

        threading.Thread(target=load, name=f"clik-load-{version.name[:12]}", daemon=True).start()

    def freeze_heap(self) -> None:
        """gc.freeze() what lives now (modules, models): later collections skip it."""
        if self.settings.gc_freeze:
            gc.collect()
            gc.freeze()

    @property
    def limits(self) -> FetchLimits:
        """The fetch limits, with the store's own catalogue folders (indexer.store_settings)
        readable too: a store loaded by `clik demo` or `clik index FOLDER` serves its images
        without CLIK_FILE_ROOTS. Re-read every 30 s; a store that cannot be read keeps the last."""
        if time.monotonic() - self._roots_read_at > 30.0:
            try:
                self._limits = self.settings.fetch_limits(stored_file_roots(self.store))
                self._roots_read_at = time.monotonic()
            except StoreError:
                pass
        return self._limits

    def close(self) -> None:
        self.cpu.close()
        self.fetchers.shutdown(wait=False, cancel_futures=True)
        self.image_proxy.close()

    # -- versions and queries -----------------------------------------------------------------
    def resolve_version(self, requested: str | None = None) -> ModelVersion:
        """The active version, read from the store on every request (a re-index may switch it)."""
        active = self.store.active_version()
        if active is None:
            raise ModelUnavailable("no active model version: register and activate a bundle first")
        if requested is not None and requested != active.name:
            raise VersionMismatch(f"model version {requested!r} is not the active one ({active.name})")
        return active

    def version_named(self, name: str) -> ModelVersion:
        """The record of a version the store just named as active (the one seen last, or read)."""
        guess = self._active_guess
        if guess is not None and guess.name == name:
            return guess
        version = self.store.get_version(name)
        if version.active:
            self._active_guess = version
        return version

    def query(self, version: ModelVersion, topic: Mapping[str, object]) -> np.ndarray:
        """The topic's ranking query for `version`."""
        return self.query_and_topic(version, topic)[0]

    def query_and_topic(self, version: ModelVersion, topic: Mapping[str, object]) -> tuple[np.ndarray, np.ndarray]:
        """The ranking query and the topic embedding (Topic Matching space), cached together:
        one text-tower pass gives both."""
        encoder = self.text.get(version)

        def encode(attrs: dict) -> np.ndarray:
            return topic_cache.encode_entries(encoder, [attrs])[0]

        return topic_cache.split_entry(self.topics.query(version.name, topic, lambda attrs: self.cpu.run(encode, attrs)))

    def topic_fit_model(self, version: ModelVersion) -> tuple[TopicFit, float]:
        """The version's calibrated topic-fit model (from its bundle; the prior when the bundle
        has none) and the threshold in force (CLIK_TOPIC_FIT_THRESHOLD overrides the bundle's)."""
        info = self.text.get(version).info
        calibration = TopicFit.from_dict(info.topic_fit) if info.topic_fit else DEFAULT_FIT
        threshold = self.settings.topic_fit_threshold
        return calibration, calibration.threshold if threshold is None else threshold

    # -- products -------------------------------------------------------------------------------
    def put_products(self, items: list[tuple[str, str, dict]]) -> list[tuple[Product, bool]]:
        """Store the products, queue those whose image is not encoded yet (a retried PUT of a
        pending one is queued again: the worker skips images it already has)."""
        for _, _, attrs in items:  # refuses bad business-rule attrs before anything is written
            facet_of(attrs or {})
        stored = [self.store.put_product(pid, src, attrs) for pid, src, attrs in items]
        queued = [p.product_id for p in stored if p.status is not ProductStatus.ENCODED]
        if queued:
            self.queue.submit(queued)
            self.metrics.encodes_submitted.inc(len(queued))
        return [(p, p.status is not ProductStatus.ENCODED) for p in stored]

    def product_image(self, product_id: str) -> tuple[bytes, str]:
        product = self.store.get_product(product_id)
        try:
            data = read_source(product.image_source, self.limits)
        except ImageLoadError as exc:
            raise ImageUnavailable(f"image of product {product_id!r}: {exc.reason}") from None
        except ValueError as exc:  # urllib/idna refuse some URLs before any limit applies
            raise ImageUnavailable(f"image of product {product_id!r}: invalid URL: {exc}") from None
        try:
            with Image.open(io.BytesIO(data)) as image:  # header only: we pass the bytes on
                fmt = image.format
        except Exception:
            raise ImageUnavailable(f"image of product {product_id!r} is not an image") from None
        if fmt not in self.limits.formats:
            raise ImageUnavailable(f"image of product {product_id!r} has unsupported format {fmt}")
        return data, Image.MIME.get(fmt, "application/octet-stream")

    # -- rankings -------------------------------------------------------------------------------
    def representative(self, exhibition_id: str, topk: int, model_version: str | None,
                       diverse: bool = False) -> ExplainedRanking:
        return self.ranking_page(exhibition_id, 0, topk, model_version, diverse)

    def rules(self, overrides: Overrides, block: ScoringBlock, diverse: bool) -> tuple[Rules | None, Aligned | None]:
        """The exhibition's business rules (None when nothing applies: the plain ranking). The
        facets of the block's products are read once per decoded block (api.per_block_cache)."""
        aligned = self.aligned.get(block, (), lambda: align(block, {
            pid: facet_of(attrs, strict=False)
            for pid, attrs in self.store.get_attrs([str(p) for p in block.product_ids]).items()}))
        boosts = self.settings.boosts if overrides.boosts is None else overrides.boosts
        if overrides.empty and not aligned.any_facet and not boosts and not diverse:
            return None, None
        rules = Rules(overrides, boosts, self.diverse_options if diverse else None)
        return rules, aligned

    def ranking_page(self, exhibition_id: str, offset: int, limit: int,
                     model_version: str | None, diverse: bool = False) -> ExplainedRanking:
        """Ranks [offset, offset+limit) of the exhibition, every item explained (appeal, topic
        fit, score, boosts) and ordered by the topic-fit gate, with the exhibition's overrides,
        availability and boosts applied; `diverse`: the greedy MMR selection (clik.diverse)."""
        if offset < 0 or limit < 1:
            raise InvalidInput("offset must be >= 0 and limit >= 1")
        topic = self.store.get_exhibition_topic(exhibition_id)
        return self._ranked(model_version, lambda version, requested: self._rank_with(
            exhibition_id, topic, version, requested, offset, limit, diverse))

    def ranking_page_of(self, exhibition_id: str, offset: int, limit: int, version_name: str,
                        diverse: bool = False) -> ExplainedRanking:
        """The same ranking by a registered version that need not be the active one (an
        experiment's arm; the offline replay of a candidate). Raises VersionNotFound."""
        if offset < 0 or limit < 1:
            raise InvalidInput("offset must be >= 0 and limit >= 1")
        topic = self.store.get_exhibition_topic(exhibition_id)
        version = self.store.get_version(version_name)
        return self._rank_with(exhibition_id, topic, version, version.name, offset, limit, diverse)

    def _rank_with(self, exhibition_id: str, topic: Mapping[str, object], version: ModelVersion,
                   requested: str | None, offset: int, limit: int, diverse: bool) -> ExplainedRanking:
        query, topic_emb = self.query_and_topic(version, topic)
        name, stamp, block = self.store.stamped_block(exhibition_id, requested)
        if name != version.name:  # the store resolved another active version
            return ExplainedRanking(exhibition_id, name, [], 0)
        calibration, threshold = self.topic_fit_model(version)
        # read once: the rules applied and the ETag must describe the same overrides
        overrides = self.merch.overrides(exhibition_id)
        rules, aligned = self.rules(overrides, block, diverse)
        ranked = explain(exhibition_id, name, block, query, topic_emb, calibration, threshold,
                         offset, limit, self.fits, cache_key(clean_topic(topic)), rules, aligned)
        return replace(ranked, etag=answer_etag(exhibition_id, name, stamp, overrides.updated_at, threshold,
                                                offset, limit, diverse, self.settings_digest))

    @property
    def settings_digest(self) -> str:
        """The settings an answer depends on beyond the store (boosts, diverse options)."""
        if self._settings_digest is None:
            parts = repr((sorted(self.settings.boosts.items()), self.diverse_options))
            self._settings_digest = hashlib.blake2b(parts.encode(), digest_size=8).hexdigest()
        return self._settings_digest

    def _ranked(self, model_version: str | None,
                rank: Callable[[ModelVersion, str | None], ExplainedRanking]) -> ExplainedRanking:
        """Rank with the query of the version that was active last time, letting the store
        resolve the active version inside the ranking call itself (one round trip fewer than
        asking first). If the store ranked with another version (a switch happened), the
        result is thrown away and the ranking redone with that version's own query: a query
        and vectors of two versions never meet in a returned ranking."""
        guess = self._active_guess
        if guess is not None and model_version in (None, guess.name):
            try:
                ranking = rank(guess, None)
            except (InvalidVector, ModelUnavailable):  # another dimension now / old bundle gone
                ranking = None
            if ranking is not None and ranking.model_version == guess.name:
                return ranking
        version = self.resolve_version(model_version)
        self._active_guess = version
        return rank(version, version.name)

    def search(self, text: str, k: int, model_version: str | None) -> tuple[str, list[tuple[str, float]]]:
        version = self.resolve_version(model_version)
        query = self.query(version, {"name": text})
        return version.name, self.catalogue.search(version, query, k)

    def rank_sources(self, topic: Mapping[str, object], urls: list[str], uploads: list[bytes],
                     topk: int | None, model_version: str | None) -> RankedSources:
        """The original project's TaskOperator as a service: rank images given now. Vectors the
        store already has for this image content (active version) are reused."""
        version = self.resolve_version(model_version)
        query, topic_emb = self.query_and_topic(version, topic)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        datas: list[bytes | ImageLoadError] = list(self.fetchers.map(self._fetch, urls)) + list(uploads)
        errors: dict[int, str] = {i: d.reason for i, d in enumerate(datas) if isinstance(d, ImageLoadError)}
        # The image pipeline (clik.image_pipeline) from the bytes on: hash, then decode,
        # transform and encode what the store has no vector for, one image once.
        pipeline = ImagePipeline(self.limits)
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
            for batch in pipeline.encode(todo, encoder.transform,
                                         lambda pixels: self.cpu.run(encoder.encode_pixels, pixels),
                                         batch_size=len(todo)):
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
        calibration, threshold = self.topic_fit_model(version)
        topic_emb = topic_emb / max(float(np.linalg.norm(topic_emb)), 1e-12)
        scored = score_products(matrix @ query, product_features(matrix, topic_emb), calibration, threshold)
        ranked = sorted(range(len(order)), key=lambda j: (-scored.score[j], order[j]))[: topk or len(order)]
        items = [RankedSource(order[j], float(scored.score[j]), r + 1, order[j] in reused, float(scored.appeal[j]),
                              float(scored.topic_fit[j]), bool(scored.off_topic[j])) for r, j in enumerate(ranked)]
        return RankedSources(version.name, items, errors)

    def _fetch(self, url: str) -> bytes | ImageLoadError:
        try:
            return read_source(url, self.limits)
        except ImageLoadError as exc:
            return exc
        except ValueError as exc:  # bad port, non-IDNA host name...: that URL's error only
            return ImageLoadError(f"invalid URL: {exc}")
