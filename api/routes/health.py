"""Liveness, readiness (store reachable, active model loaded) and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from api.deps import service
from api.schemas import CoverageOut, Health, Ready
from api.service import ClikService

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz", response_model=Health)
async def healthz():
    """The process answers. async: answered on the event loop, not behind a busy threadpool."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
def readyz(svc: ClikService = Depends(service)):
    """Ready when the store and the broker answer, the active version's text side is loaded and
    that version has vectors for at least CLIK_READY_MIN_COVERAGE of the products that are not
    failed. A version not loaded yet starts loading in the background."""
    problems: list[str] = []
    name = None
    try:
        active = svc.store.active_version()
    except Exception as exc:  # any store failure means: not ready
        active = None
        log.warning("readyz: store unavailable: %s", exc)
        problems.append("store unavailable")  # its address stays in the log
    else:
        if active is None:
            problems.append("no active model version")
        else:
            name = active.name
            if svc.text.peek(name) is None:
                error = svc.loader.errors.get(name)
                problems.append(f"model {name} cannot be loaded: {error}" if error else f"model {name} not loaded yet")
                svc.loader.load(active)
            coverage = _coverage(svc, name, problems)
    problems += _broker_problems(svc)
    body = Ready(
        status="not ready" if problems else "ready",
        model_version=name,
        loaded_versions=svc.text.loaded(),
        coverage=coverage if name else None,
        problems=problems,
    )
    return JSONResponse(body.model_dump(), status_code=503 if problems else 200)


def _coverage(svc: ClikService, version: str, problems: list[str]) -> CoverageOut | None:
    """The active version's coverage; below CLIK_READY_MIN_COVERAGE the service is not ready."""
    try:
        cov = svc.coverage.of(version)
    except Exception as exc:  # a store failure while counting: not ready either
        log.warning("readyz: store unavailable while counting coverage: %s", exc)
        problems.append("store unavailable")
        return None
    share = cov.rankable_share(version)
    need = svc.settings.ready_min_coverage
    if share < need:
        problems.append(
            f"active version covers {cov.covered[version]} of {cov.products - cov.failed} rankable "
            f"products ({share:.0%}), below the required {need:.0%} (CLIK_READY_MIN_COVERAGE)"
        )
    return CoverageOut(
        products=cov.products, with_vectors=cov.covered[version], failed=cov.failed, share=round(share, 4)
    )


def _broker_problems(svc: ClikService) -> list[str]:
    """The encode queue's broker answers a ping (an injected queue without ping() is trusted)."""
    ping = getattr(svc.queue, "ping", None)
    if ping is None:
        return []
    error = ping(svc.settings.broker_ping_timeout_s)
    if error is None:
        return []
    log.warning("readyz: broker unavailable: %s", error)
    return ["broker unavailable: encode tasks cannot be queued"]


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(svc: ClikService = Depends(service)):
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
