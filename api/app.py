"""The FastAPI app: `create_app(settings, store=..., encode_queue=...)`, or from the environment:

uvicorn --factory api.app:app_from_env --host 0.0.0.0 --port 8000
"""

from __future__ import annotations

import contextlib
import logging

import torch
from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from api.announced import AnnouncedRenders
from api.body_limit import BodyLimitMiddleware
from api.encode_queue import CeleryEncodeQueue, EncodeQueue
from api.error_bodies import SafeJSONResponse, clip_text, validation_detail
from api.errors import install_handlers
from api.metrics import ApiMetrics, MetricsMiddleware
from api import events
from api.experiment_serve import ExperimentServing
from api.precompute import Precompute
from api.hot_answers import HotAnswers
from api.ranked_answers import PAGE, REPRESENTATIVE, RankingAnswers
from api.routes import exhibitions, experiments, health, overrides, products, rank, search
from api.service import ClikService
from api.settings import ApiSettings
from api.ui import mount_ui
from indexer.config import open_store
from indexer.store import VectorStore

log = logging.getLogger(__name__)


def create_app(
    settings: ApiSettings | None = None, *, store: VectorStore | None = None, encode_queue: EncodeQueue | None = None
) -> FastAPI:
    """Injected store / queue are used as given (and not closed by the app)."""
    settings = settings or ApiSettings()
    # One process-wide intra-op pool, small: concurrent requests queue in the CPU pool instead
    # of each spawning as many threads as there are cores.
    torch.set_num_threads(settings.torch_threads)
    threadpool_limits(limits=settings.blas_threads, user_api="blas")  # process-wide
    own_store = store is None
    own_queue = encode_queue is None
    store = store if store is not None else open_store(settings.store_url, prefix=settings.store_prefix)
    queue = (
        encode_queue
        if encode_queue is not None
        else CeleryEncodeQueue(settings.broker_url, settings.queue, chunk=settings.encode_chunk)
    )
    metrics = ApiMetrics()
    svc = ClikService(settings, store, queue, metrics)
    metrics.gauge(
        "clik_api_pending_encodes",
        "Encode tasks waiting in the queue (broker's count)",
        getattr(queue, "depth", lambda: None),
    )
    metrics.gauge("clik_api_loaded_models", "Model versions whose text side is loaded", lambda: len(svc.text.loaded()))
    metrics.gauge(
        "clik_active_version_coverage_ratio",
        "Share of the products (not failed) that the active version can rank, as /readyz last measured it",
        svc.coverage.last_share,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.preload_model:
            try:
                active = store.active_version()
                if active is not None:
                    svc.loader.load(active)
            except Exception as exc:  # the store may come up later: /readyz says so meanwhile
                log.warning("cannot preload the active model: %s", exc)
        svc.loader.freeze_heap()
        app.state.async_reads = store.async_reads()  # on this loop: the hot path's store reads
        if settings.render_precomputed:
            app.state.announced.start()
        yield
        reads, app.state.async_reads = app.state.async_reads, None
        await reads.aclose()
        app.state.announced.close()
        app.state.precompute.close()
        svc.close()
        if own_queue and hasattr(queue, "close"):
            queue.close()
        if own_store:
            store.close()

    app = FastAPI(
        title="CLIK representative-image API",
        version="1.0",
        description="Picks the representative image of an exhibition (CLIK, RecSys 2022). "
        "Write routes need the X-API-Key header.",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.settings = settings
    app.state.service = svc
    app.state.answers = RankingAnswers(
        svc, svc.answers, settings.result_cache_ttl_s, lambda source: metrics.answers.labels(source).inc()
    )
    app.state.precompute = Precompute(
        app.state.answers, getattr(queue, "precompute", None), lambda result: metrics.precompute.labels(result).inc()
    )
    app.state.announced = AnnouncedRenders(
        app.state.answers, store, lambda result: metrics.precompute.labels(result).inc()
    )
    install_handlers(app, lambda kind, status: metrics.errors.labels(kind, str(status)).inc())
    app.state.events = _event_log(store)
    app.state.experiments = ExperimentServing(
        svc, app.state.events, settings.experiments_cache_s, settings.experiment_control_pool
    )
    for module in (products, exhibitions, overrides, rank, search, health, events, experiments):
        app.include_router(module.router)
    mount_ui(app)
    app.state.async_reads = None
    # innermost of the three: warm answers leave here, still timed by the metrics middleware
    app.add_middleware(
        HotAnswers,
        answers=app.state.answers,
        settings=settings,
        reads=lambda: app.state.async_reads,
        routes=_answer_routes(),
        units=lambda: app.state.experiments,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # outermost: a refused body is never read, whatever route it was sent to
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.max_body_bytes,
        route_limits={("POST", "/rank/upload"): settings.max_upload_body_bytes},
        api_keys=lambda: settings.api_keys,
    )
    _count_http_errors(app, metrics)
    return app


def _answer_routes() -> dict[str, object]:
    """The routes the hot path answers for, by kind of answer (their templates label metrics)."""
    paths = {
        "/exhibitions/{exhibition_id}/representative": REPRESENTATIVE,
        "/exhibitions/{exhibition_id}/ranking": PAGE,
    }
    return {paths[r.path]: r for r in exhibitions.router.routes if getattr(r, "path", None) in paths}


def _event_log(store: VectorStore):
    from indexer.events import event_log_for

    return event_log_for(store)


def _count_http_errors(app: FastAPI, metrics: ApiMetrics) -> None:
    """4xx raised by FastAPI itself (validation, auth) also count as errors. Their bodies are
    built here (not by FastAPI's handlers) so that echoed input is clipped and always encodable
    (api/error_bodies.py)."""
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def on_http(request, exc):
        metrics.errors.labels("HTTPException", str(exc.status_code)).inc()
        if exc.status_code in (204, 304):
            return await http_exception_handler(request, exc)
        detail = validation_detail(exc.detail) if isinstance(exc.detail, list) else clip_text(str(exc.detail))
        return SafeJSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def on_validation(request, exc):
        metrics.errors.labels("RequestValidationError", "422").inc()
        return SafeJSONResponse({"detail": validation_detail(list(exc.errors()))}, status_code=422)

    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)


def app_from_env() -> FastAPI:
    """uvicorn factory: settings from CLIK_* environment variables."""
    logging.basicConfig(level=logging.INFO)
    return create_app(ApiSettings())
