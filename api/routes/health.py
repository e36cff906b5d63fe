"""Liveness, readiness (store reachable, active model loaded) and Prometheus metrics."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from api.deps import service
from api.schemas import CoverageOut, Health, Ready
from api.service import ClikService

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz():
    """The process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
def readyz(svc: ClikService = Depends(service)):
    """Ready when the store answers, the active version's text side is loaded and that version
    has vectors for at least CLIK_READY_MIN_COVERAGE of the products that are not failed. A
    version not loaded yet starts loading in the background."""
    problems: list[str] = []
    name = None
    try:
        active = svc.store.active_version()
    except Exception as exc:  # any store failure means: not ready
        active = None
        problems.append(f"store unavailable: {exc}")
    else:
        if active is None:
            problems.append("no active model version")
        else:
            name = active.name
            if svc.text.peek(name) is None:
                error = svc.load_errors.get(name)
                problems.append(f"model {name} cannot be loaded: {error}" if error
                                else f"model {name} not loaded yet")
                svc.load_in_background(active)
            coverage = _coverage(svc, name, problems)
    body = Ready(status="not ready" if problems else "ready", model_version=name,
                 loaded_versions=svc.text.loaded(), coverage=coverage if name else None, problems=problems)
    return JSONResponse(body.model_dump(), status_code=503 if problems else 200)


def _coverage(svc: ClikService, version: str, problems: list[str]) -> CoverageOut | None:
    """The active version's coverage; below CLIK_READY_MIN_COVERAGE the service is not ready."""
    try:
        cov = svc.coverage.of(version)
    except Exception as exc:  # a store failure while counting: not ready either
        problems.append(f"store unavailable: {exc}")
        return None
    share = cov.rankable_share(version)
    need = svc.settings.ready_min_coverage
    if share < need:
        problems.append(f"active version covers {cov.covered[version]} of {cov.products - cov.failed} rankable "
                        f"products ({share:.0%}), below the required {need:.0%} (CLIK_READY_MIN_COVERAGE)")
    return CoverageOut(products=cov.products, with_vectors=cov.covered[version], failed=cov.failed,
                       share=round(share, 4))


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(svc: ClikService = Depends(service)):
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
