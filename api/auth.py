"""API keys (header X-API-Key): writes always need one, reads only when open_reads is off.

The dependencies are async on purpose: they do no I/O, and FastAPI runs sync dependencies in
the threadpool, one thread hop each per request.
"""
from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="one of CLIK_API_KEYS")


def _check(request: Request, key: str | None) -> None:
    keys: list[str] = request.app.state.settings.api_keys
    if not key:
        raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"})
    # compare against every key in constant time: the answer's timing says nothing about them
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
        raise HTTPException(403, "invalid API key")


async def require_writer(request: Request, key: str | None = Security(_header)) -> None:
    _check(request, key)


async def require_reader(request: Request, key: str | None = Security(_header)) -> None:
    if not request.app.state.settings.open_reads:
        _check(request, key)
