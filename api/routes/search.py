"""GET /search: the catalogue's best products for a free-text topic."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from api.auth import require_reader
from api.deps import ModelVersionParam, service, unprocessable
from api.schemas import SearchOut
from api.service import ClikService

router = APIRouter(tags=["search"])


@router.get("/search", response_model=SearchOut, dependencies=[Depends(require_reader)], responses={409: {}, 503: {}})
def search(
    q: str = Query(..., min_length=1, max_length=1000, description="topic text"),
    k: int = Query(10, ge=1),
    model_version: str | None = ModelVersionParam,
    svc: ClikService = Depends(service),
):
    if k > svc.settings.search_max_k:
        raise unprocessable(["query", "k"], f"at most {svc.settings.search_max_k}")
    if not q.strip():
        raise unprocessable(["query", "q"], "must contain text")
    version, hits = svc.text_search.search(q, k, model_version)
    return SearchOut(
        model_version=version,
        query=q,
        items=[{"product_id": p, "score": s, "rank": r + 1} for r, (p, s) in enumerate(hits)],
    )
