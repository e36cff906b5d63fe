"""Exhibitions: topic + product list; their representative image and full ranking."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api.answers import conditional
from api.error_bodies import SafeJSONResponse
from api.experiment_serve import prefixed
from api.auth import require_reader, writer_name
from api.deps import ModelVersionParam, answers, service, unprocessable
from api.schemas import (
    ID_ALPHABET,
    ID_PATTERN,
    ExhibitionIn,
    ExhibitionList,
    ExhibitionOut,
    ExhibitionSummary,
    RankingOut,
    RankingPage,
)
from api.service import ClikService
from api.ranked_answers import PAGE, REPRESENTATIVE, RankingAnswers, Request as AnswerRequest, ranking_body
from indexer.records import Exhibition

router = APIRouter(tags=["exhibitions"])
ExhibitionId = Path(min_length=1, max_length=512, pattern=ID_PATTERN, description=ID_ALPHABET)
DiverseParam = Query(
    False,
    description="greedy MMR selection: varied images, at most one per family "
    "(attrs.family), never two near-duplicates (docs/merchandising.md)",
)
UNIT_DOC = (
    "a visitor or session key: serve the arm of the running experiment it is assigned to "
    "(deterministically), with request_id, arm and propensity to log in its events"
)
_READ_ERRORS = {
    404: {},
    409: {"description": "model_version is not the active one"},
    503: {"description": "store down or no model active/loadable"},
}


def _out(e: Exhibition) -> ExhibitionOut:
    return ExhibitionOut(
        exhibition_id=e.exhibition_id, topic=e.topic, product_ids=list(e.product_ids), updated_at=e.updated_at
    )


@router.put("/exhibitions/{exhibition_id}", response_model=ExhibitionOut, responses={401: {}, 403: {}, 503: {}})
def put_exhibition(
    request: Request,
    body: ExhibitionIn,
    exhibition_id: str = ExhibitionId,
    svc: ClikService = Depends(service),
    who: str = Depends(writer_name),
):
    """Create or replace an exhibition (products may be registered later, in any order).
    Pins and blocks of products no longer listed are dropped from its overrides."""
    limit = svc.settings.max_exhibition_products
    if len(body.product_ids) > limit:
        raise unprocessable(["body", "product_ids"], f"at most {limit} products per exhibition")
    exhibition = svc.store.put_exhibition(exhibition_id, body.topic.attrs(), body.product_ids)
    svc.merch.prune(exhibition_id, set(exhibition.product_ids), who)
    request.app.state.precompute.exhibition_written(exhibition_id)  # topic and block before a read
    return _out(exhibition)


@router.get("/exhibitions", response_model=ExhibitionList, dependencies=[Depends(require_reader)], responses={503: {}})
def list_exhibitions(
    offset: int = Query(0, ge=0, le=10**9), limit: int = Query(50, ge=1, le=1000), svc: ClikService = Depends(service)
):
    page = svc.store.list_exhibitions(offset=offset, limit=limit)
    items = [
        ExhibitionSummary(
            exhibition_id=e.exhibition_id,
            name=str(e.topic.get("name", "")),
            products=len(e.product_ids),
            updated_at=e.updated_at,
        )
        for e in page.items
    ]
    return ExhibitionList(total=page.total, offset=offset, limit=limit, items=items)


@router.get(
    "/exhibitions/{exhibition_id}",
    response_model=ExhibitionOut,
    dependencies=[Depends(require_reader)],
    responses={404: {}, 503: {}},
)
def get_exhibition(exhibition_id: str = ExhibitionId, svc: ClikService = Depends(service)):
    return _out(svc.store.get_exhibition(exhibition_id))


@router.delete("/exhibitions/{exhibition_id}", status_code=204, responses={401: {}, 403: {}, 404: {}, 503: {}})
def delete_exhibition(
    exhibition_id: str = ExhibitionId, svc: ClikService = Depends(service), who: str = Depends(writer_name)
):
    """Delete it; its pins and blocks go with it (an exhibition made again under the same id
    starts without them; the history is kept)."""
    svc.store.delete_exhibition(exhibition_id)
    svc.merch.prune(exhibition_id, set(), who)
    return Response(status_code=204)


@router.get(
    "/exhibitions/{exhibition_id}/representative",
    response_model=RankingOut,
    dependencies=[Depends(require_reader)],
    responses=_READ_ERRORS,
)
def representative(
    request: Request,
    exhibition_id: str = ExhibitionId,
    topk: int = Query(1, ge=1),
    diverse: bool = DiverseParam,
    model_version: str | None = ModelVersionParam,
    unit: str | None = Query(None, min_length=1, max_length=256, description=UNIT_DOC),
    experiment: str | None = Query(
        None,
        min_length=1,
        max_length=200,
        pattern=ID_PATTERN,
        description="the experiment to serve (default: the running one bound to this exhibition); needs unit",
    ),
    svc: ClikService = Depends(service),
    found: RankingAnswers = Depends(answers),
):
    """The top `topk` products: the most appealing among those that fit the topic. Each item
    carries `appeal` (CLIK's ranking score), `topic_fit` (calibrated probability of belonging
    to the topic), `off_topic` and the final `score`; a flagged product comes first only when
    every product is flagged (`all_off_topic`). Blocked, sold-out and hidden products are
    never shown; pinned ones keep their positions; `boosts` shows each score modifier.
    The answer carries an ETag (304 for a client that holds it) and Cache-Control.

    With `unit` (a visitor or session key): the answer of the unit's experiment arm, with
    `request_id`, `experiment`, `arm`, `policy`, `share` and the `propensity` of the first item
    (docs/experiments.md); such answers are per request (`Cache-Control: private, no-store`)."""
    if topk > svc.settings.representative_max_topk:
        raise unprocessable(["query", "topk"], f"at most {svc.settings.representative_max_topk}")
    if unit is not None:
        if model_version is not None:
            raise unprocessable(
                ["query", "model_version"],
                "an experiment's arm picks the model version: leave model_version out with unit",
            )
        return _in_experiment(request, found, exhibition_id, unit, experiment, topk, diverse)
    if experiment is not None:
        raise unprocessable(["query", "unit"], "experiment needs the unit to assign to an arm")
    # the hot path: one round trip for the tag, then the answer's bytes from this process or
    # the store (api/ranked_answers.py); response_model still documents the body
    req = AnswerRequest(REPRESENTATIVE, exhibition_id, 0, topk, model_version, diverse)
    return conditional(
        request, found.current_tag(req), svc.settings.result_max_age_s, lambda etag: found.body(req, etag)
    )


def _in_experiment(
    request: Request,
    found: RankingAnswers,
    exhibition_id: str,
    unit: str,
    experiment: str | None,
    topk: int,
    diverse: bool,
) -> Response:
    served = request.app.state.experiments.serve(exhibition_id, unit, experiment, topk, diverse)
    if served.ranking is None:
        # the plain answer's bytes (this process's, the store's or computed), the experiment's
        # fields in front; a propensity only where something was served
        req = AnswerRequest(REPRESENTATIVE, exhibition_id, 0, topk, None, diverse)
        plain = found.body(req, found.current_tag(req))[1]
        extras = served.extras if json.loads(plain)["items"] else {**served.extras, "propensity": None}
        body = prefixed(extras, plain)
    else:
        body = SafeJSONResponse({**served.extras, **ranking_body(served.ranking)}).body
    return Response(content=body, media_type="application/json", headers={"Cache-Control": "private, no-store"})


@router.get(
    "/exhibitions/{exhibition_id}/ranking",
    response_model=RankingPage,
    dependencies=[Depends(require_reader)],
    responses=_READ_ERRORS,
)
def ranking(
    request: Request,
    exhibition_id: str = ExhibitionId,
    offset: int = Query(0, ge=0, le=10**9),
    limit: int = Query(50, ge=1),
    diverse: bool = DiverseParam,
    model_version: str | None = ModelVersionParam,
    svc: ClikService = Depends(service),
    found: RankingAnswers = Depends(answers),
):
    """The whole ranking, paged (diverse: the first representative_max_topk positions only)."""
    if limit > svc.settings.page_max:
        raise unprocessable(["query", "limit"], f"at most {svc.settings.page_max}")
    if diverse and offset + limit > svc.settings.representative_max_topk:
        raise unprocessable(
            ["query", "diverse"],
            "a diverse ranking covers the first "
            f"{svc.settings.representative_max_topk} positions: offset + limit must not exceed it",
        )
    req = AnswerRequest(PAGE, exhibition_id, offset, limit, model_version, diverse)
    return conditional(
        request, found.current_tag(req), svc.settings.result_max_age_s, lambda etag: found.body(req, etag)
    )
