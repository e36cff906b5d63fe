"""Shared route helpers."""

from __future__ import annotations

from fastapi import HTTPException, Query, Request

from api.ranked_answers import RankingAnswers
from api.service import ClikService


async def service(request: Request) -> ClikService:  # async: no threadpool hop
    return request.app.state.service


async def answers(request: Request) -> RankingAnswers:
    return request.app.state.answers


def unprocessable(loc: list, message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, naming the field."""
    return HTTPException(422, [{"loc": loc, "msg": message, "type": "value_error"}])


ModelVersionParam = Query(None, max_length=512, description="refuse (409) unless this is the active model version")
