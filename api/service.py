"""What the routes do, apart from HTTP: one object that builds and holds the API's parts.

`ClikService` is a thin facade: each job lives in its own module, and this only wires them over
one store, queue, CPU pool and the model caches, so a route (api/routes/*) takes one dependency
and calls the part it needs (`svc.rankings.page(...)`, `svc.products.put(...)`).

| part | job | module |
| --- | --- | --- |
| `versions` | the active version, and the guess that saves a round trip | api/versions.py |
| `queries` | topic queries and the topic-fit model of a version | api/queries.py |
| `products` | products: PUT and the product image | api/products.py |
| `rankings` | rankings, ranking pages and their ETag | api/rankings.py |
| `text_search` | catalogue search (GET /search) | api/catalogue.py |
| `sources` | POST /rank: images fetched, encoded and ranked now | api/rank_sources.py |
| `loader` | the text side loaded in the background, gc.freeze | api/model_loading.py |
| `fetch_limits` | fetch limits with the store's file roots | api/fetch_limits.py |

Everything here is synchronous and runs in the request threadpool; model computations go
through the CPU pool (a few at a time), product images through the image proxy's own threads.
"""

from __future__ import annotations

from api.answers import RenderedAnswers
from api.catalogue import CatalogueSearch, TextSearch, default_catalogue_dir
from api.coverage import CoverageMonitor
from api.encode_queue import EncodeQueue
from api.fetch_limits import StoreFetchLimits
from api.image_proxy import ImageProxy
from api.loaded_models import CpuPool, ModelCache
from api.merch import MerchState
from api.metrics import ApiMetrics
from api.model_loading import BackgroundLoader
from api.products import Products
from api.queries import RankingQueries
from api.rank_sources import SourceRanker
from api.rankings import Rankings
from api.settings import ApiSettings
from api.topics import TopicQueries
from api.versions import ActiveVersions
from clik import topic_cache
from clik.encoders import ImageEncoder, TopicEncoder
from indexer.store import VectorStore


class ClikService:
    def __init__(self, settings: ApiSettings, store: VectorStore, queue: EncodeQueue, metrics: ApiMetrics) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.metrics = metrics
        self.fetch_limits = StoreFetchLimits(settings, store)
        device = settings.device
        self.text = ModelCache(lambda b: TopicEncoder.load(b, device=device), settings.max_loaded_models, "text side")
        # the image tower is only for POST /rank: loaded on first use
        self.images = ModelCache(
            lambda b: ImageEncoder.load(b, device=device, limits=self.fetch_limits.current()),
            settings.max_loaded_models,
            "image side",
        )
        self.cpu = CpuPool(settings.cpu_workers)
        self.image_proxy = ImageProxy(
            settings.image_proxy_concurrency, settings.image_proxy_queue, settings.image_proxy_wait_s
        )
        # Cached entries hold the ranking query and the topic embedding (clik.topic_cache).
        self.topics = TopicQueries(
            store,
            settings.topic_cache_size,
            namespace=topic_cache.NAMESPACE,
            on_lookup=lambda r: metrics.topic_cache.labels(r).inc(),
        )
        self.merch = MerchState(store, settings.merch_cache_s)
        self.coverage = CoverageMonitor(store, settings.coverage_refresh_s)
        self.answers = RenderedAnswers()
        self.loader = BackgroundLoader(self.text, settings.gc_freeze)
        self.versions = ActiveVersions(store)
        self.queries = RankingQueries(self.text, self.topics, self.cpu, settings.topic_fit_threshold)
        self.products = Products(store, queue, metrics, self.fetch_limits)
        self.rankings = Rankings(settings, store, self.versions, self.queries, self.merch)
        self.catalogue = CatalogueSearch(
            store,
            settings.catalogue_dir or default_catalogue_dir(settings.store_url, settings.store_prefix),
            settings.catalogue_min_rebuild_s,
        )
        self.text_search = TextSearch(self.catalogue, self.versions, self.queries)
        self.sources = SourceRanker(store, self.versions, self.queries, self.images, self.cpu, self.fetch_limits)

    def close(self) -> None:
        self.cpu.close()
        self.sources.close()
        self.image_proxy.close()
