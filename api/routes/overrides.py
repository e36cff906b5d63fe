"""Merchandiser overrides of one exhibition: pinned positions, blocked products, boost weights.
Every change is recorded with the API key's name and the time (GET shows the history)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from api.auth import require_reader, writer_name
from api.deps import service, unprocessable
from api.merch import Overrides, check_overrides
from api.routes.exhibitions import ExhibitionId
from api.schemas import OverridesIn, OverridesOut
from api.service import ClikService

router = APIRouter(tags=["merchandising"])


def _out(svc: ClikService, o: Overrides) -> dict:
    boosts = svc.settings.boosts if o.boosts is None else o.boosts
    return {"exhibition_id": o.exhibition_id, **o.to_json(), "boosts_in_force": dict(boosts)}


@router.get(
    "/exhibitions/{exhibition_id}/overrides",
    response_model=OverridesOut,
    dependencies=[Depends(require_reader)],
    responses={404: {}, 503: {}},
)
def get_overrides(exhibition_id: str = ExhibitionId, svc: ClikService = Depends(service)):
    svc.store.get_exhibition_topic(exhibition_id)  # 404 for an unknown exhibition
    return _out(svc, svc.merch.overrides(exhibition_id))


@router.put(
    "/exhibitions/{exhibition_id}/overrides",
    response_model=OverridesOut,
    responses={401: {}, 403: {}, 404: {}, 422: {}, 503: {}},
)
def put_overrides(
    body: OverridesIn,
    exhibition_id: str = ExhibitionId,
    svc: ClikService = Depends(service),
    who: str = Depends(writer_name),
):
    """Replace the exhibition's overrides. Pinned and blocked products must be listed in the
    exhibition (422 naming the first one that is not)."""
    check_overrides(body.pinned, body.blocked)
    listed = set(svc.store.get_exhibition(exhibition_id).product_ids)
    for field, ids in (("pinned", list(body.pinned)), ("blocked", body.blocked)):
        missing = [p for p in ids if p not in listed]
        if missing:
            raise unprocessable(["body", field], f"{missing[0]!r} is not a product of exhibition {exhibition_id!r}")
    return _out(svc, svc.merch.write_overrides(exhibition_id, body.pinned, body.blocked, body.boosts, who, "put"))


@router.delete(
    "/exhibitions/{exhibition_id}/overrides", status_code=204, responses={401: {}, 403: {}, 404: {}, 503: {}}
)
def delete_overrides(
    exhibition_id: str = ExhibitionId, svc: ClikService = Depends(service), who: str = Depends(writer_name)
):
    """Clear pins, blocks and the exhibition's boost weights (the history is kept)."""
    svc.store.get_exhibition_topic(exhibition_id)
    svc.merch.write_overrides(exhibition_id, {}, [], None, who, "delete")
    return Response(status_code=204)
