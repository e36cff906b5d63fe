"""POST /events: shopper events (impressions, clicks, conversions) into the event log.

The visitor or session key (`unit`) is hashed here with CLIK_EVENTS_UNIT_SALT before it is
stored, so the log never holds a raw identifier. Counting happens in `clik events` on Redis
(exactly once per event_id, across consumer kills) and at once on the embedded store, in the
same transaction as the append (indexer/events.py).
"""

from __future__ import annotations

import hashlib
import time
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from api.auth import require_writer
from api.deps import unprocessable
from api.schemas import Id

router = APIRouter(tags=["events"])


class EventIn(BaseModel):
    event_id: Id = Field(description="unique per event: a client's retry of the same event is counted once")
    type: Literal["impression", "click", "conversion"]
    exhibition_id: Id
    product_id: Id
    model_version: Id | None = Field(None, description="the version that ranked what was shown")
    position: int | None = Field(None, ge=1, le=100_000)
    request_id: Id | None = None
    unit: str | None = Field(None, min_length=1, max_length=256, description="visitor or session key; stored hashed")
    arm: Id | None = Field(None, description="experiment arm that served the product (`arm` of the answer)")
    propensity: float | None = Field(
        None,
        gt=0,
        le=1,
        description="`propensity` of the answer that showed it (kept in the log for off-policy estimates)",
    )
    timestamp: float | None = Field(None, ge=0, description="seconds since the epoch; default: when received")


class EventsIn(BaseModel):
    events: list[EventIn] = Field(min_length=1)


class EventsAccepted(BaseModel):
    accepted: int


@router.post(
    "/events",
    status_code=202,
    response_model=EventsAccepted,
    dependencies=[Depends(require_writer)],
    responses={401: {}, 403: {}, 503: {"description": "the store keeps no event log"}},
)
def post_events(body: EventsIn, request: Request) -> EventsAccepted:
    """Append a batch of events to the log (counted later, once each, by `clik events`)."""
    settings = request.app.state.settings
    log = request.app.state.events
    if log is None:
        raise HTTPException(503, "this store keeps no event log")
    if len(body.events) > settings.events_batch_max:
        raise unprocessable(["body", "events"], f"at most {settings.events_batch_max} events per request")
    now = time.time()
    salt = settings.events_unit_salt.encode()
    rows = []
    for e in body.events:
        row = e.model_dump(exclude_none=True)
        if e.unit is not None:
            row["unit"] = hashlib.blake2b(e.unit.encode(), key=salt[:64], digest_size=16).hexdigest()
        row.setdefault("timestamp", now)
        rows.append(row)
    return EventsAccepted(accepted=log.append(rows))
