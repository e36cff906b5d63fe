"""Typed API settings, read from the environment (prefix ``CLIK_``; names shared with the worker)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from indexer.contracts import DEFAULT_QUEUE
from service_config.fetch import FetchSettings
from service_config.store import StoreSettings


class ApiSettings(StoreSettings, FetchSettings, BaseSettings):
    """Every field can be set as ``CLIK_<NAME>``; lists as JSON (``CLIK_API_KEYS='["k1"]'``)."""

    model_config = SettingsConfigDict(env_prefix="CLIK_", extra="ignore")

    # store_url, store_prefix: StoreSettings (default: the shared Redis)
    broker_url: str = "redis://127.0.0.1:6379/1"  # where encode tasks are sent (worker's broker)
    queue: str = DEFAULT_QUEUE  # the worker's queue
    encode_chunk: int = Field(64, ge=1)  # product ids per encode task

    # Auth: write routes (and /rank, which spends CPU and fetches URLs) need X-API-Key.
    api_keys: list[str] = Field(default_factory=list)  # none configured: every write is refused
    open_reads: bool = True  # False: GET routes need a key too (health and metrics stay open)
    # Optional names of the keys, recorded in the overrides' audit trail ({key: name}); a key
    # without a name is recorded as "key-" + the first 8 hex digits of its SHA-256.
    api_key_names: dict[str, str] = Field(default_factory=dict)

    # Model side.
    device: str | None = None  # None: cuda when available, else cpu
    torch_threads: int = Field(1, ge=1)  # per model computation; keeps requests from fighting
    # numpy's BLAS (OpenBLAS) threads: the ranking kernel is one GEMV per request; several
    # request threads each waking a multi-threaded BLAS made 8 concurrent 10k rankings ~60x
    # slower here (35 vs 2,100 rankings/s), so the API runs BLAS single-threaded.
    blas_threads: int = Field(1, ge=1)
    cpu_workers: int = Field(1, ge=1)  # model computations (text/image encoding) run at once
    max_loaded_models: int = Field(2, ge=1)  # text sides kept loaded (old + new in a rollout)
    preload_model: bool = True  # load the active version's text side at start-up
    # Move the start-up heap (torch, transformers, the loaded model: ~460k objects) out of the
    # collector's reach: one full collection of it took 275 ms here. None happened in 20,000
    # warm rankings, so this guards against a rare spike rather than the everyday p99.
    gc_freeze: bool = True
    topic_cache_size: int = Field(4096, ge=0)  # in-process LRU of (version, topic) -> query
    # Topic fit: products below this probability are flagged off-topic and never ranked above a
    # fitting one. None: the threshold calibrated with the model (in its bundle).
    topic_fit_threshold: float | None = Field(None, ge=0, le=1)

    # Merchandising (docs/merchandising.md).
    # Overrides and product facets are cached per process this long: a change made through
    # another API process shows within it, one made through this process at once.
    merch_cache_s: float = Field(1.0, ge=0)
    # Global score boosts {numeric product attr: weight}, used by exhibitions without their own.
    boosts: dict[str, float] = Field(default_factory=dict)
    # diverse=true: MMR relevance weight (1: no redundancy term), the cosine above which two
    # images are the same picture, and how many of the best candidates the selection considers.
    diverse_trade_off: float = Field(0.7, ge=0, le=1)
    diverse_duplicate_threshold: float = Field(0.95, ge=-1, le=1)
    diverse_pool: int = Field(200, ge=1)

    # Limits of requests (see docs/security.md).
    # Request bodies, checked before routing (api/body_limit.py): a batch of 1000 products with
    # modest attrs is well under 4 MiB; only the multipart upload route takes more.
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_upload_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)  # POST /rank/upload
    # GET /products/{id}/image fetches the origin: at most this many at once, in their own
    # threads; a request waits at most image_proxy_wait_s for a slot, then gets 503 + Retry-After.
    image_proxy_concurrency: int = Field(8, ge=1)
    image_proxy_queue: int = Field(32, ge=0)  # requests waiting for a slot, beyond: 503 at once
    image_proxy_wait_s: float = Field(2.0, ge=0)
    # /readyz pings the broker with this timeout.
    broker_ping_timeout_s: float = Field(1.0, gt=0)
    rank_max_images: int = Field(50, ge=1)  # POST /rank
    representative_max_topk: int = Field(100, ge=1)
    page_max: int = Field(1000, ge=1)  # ranking and exhibition listing pages
    max_exhibition_products: int = Field(100_000, ge=1)
    batch_max_products: int = Field(1000, ge=1)
    search_max_k: int = Field(100, ge=1)
    # The catalogue index catches up with product and vector changes at most once per this many
    # seconds (a busy catalogue would otherwise be updated on every search).
    catalogue_min_rebuild_s: float = Field(5.0, ge=0)
    # Where the catalogue index files live, shared by the API processes of a host (api.catalogue).
    # None: one folder per store under the system's temporary folder.
    catalogue_dir: Path | None = None

    # Ranking answers carry an ETag and `Cache-Control: public, max-age=` this (a CDN may serve
    # one this long without asking; after that it revalidates with If-None-Match).
    result_max_age_s: int = Field(5, ge=0)
    # Rendered answers are kept in the store (shared by API processes) under their ETag this
    # long. Never stale (a change makes a new tag); the TTL only lets old tags' entries go.
    result_cache_ttl_s: int = Field(600, ge=1)
    # Render the default answer (topk=1) of exhibitions a worker announces precomputed, in a
    # background thread, one API process per answer (api/announced.py): their first read is
    # then a warm read. Off: the first read renders it, as before.
    render_precomputed: bool = True

    # Shopper events (POST /events; Redis store only).
    events_batch_max: int = Field(1000, ge=1)
    events_unit_salt: str = ""  # key of the hash that replaces visitor/session keys (set it per deployment)

    # Experiments (docs/experiments.md). Definitions, bindings and the event counters the
    # exploring arm learns from are cached per process this long: a request in an experiment
    # then costs no store read more than a plain one; the sampler sees clicks within it.
    experiments_cache_s: float = Field(1.0, ge=0)
    # control=random draws among the first this many shown products of the ranking (all of
    # them for any exhibition of the paper's size; bounded so one request stays cheap).
    experiment_control_pool: int = Field(1000, ge=1)

    # Readiness: the active version must have vectors for at least this share of the products
    # that are not failed (a rollout that left the catalogue unencoded is not "ready").
    ready_min_coverage: float = Field(0.5, ge=0, le=1)
    coverage_refresh_s: float = Field(30.0, ge=0)  # counting scans the catalogue: cached this long
