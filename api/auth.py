"""API keys (header X-API-Key): writes always need one, reads only when open_reads is off.

The dependencies are async on purpose: they do no I/O, and FastAPI runs sync dependencies in
the threadpool, one thread hop each per request.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="one of CLIK_API_KEYS")


def key_problem(key: str | None, keys: list[str]) -> tuple[int, str] | None:
    """(status, detail) when this key may not write, else None. Also used by
    api.body_limit, which refuses a keyless write before its body is read."""
    if not key:
        return 401, "missing X-API-Key header"
    # compare against every key in constant time: the answer's timing says nothing about them
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
        return 403, "invalid API key"
    return None


def _check(request: Request, key: str | None) -> None:
    problem = key_problem(key, request.app.state.settings.api_keys)
    if problem is not None:
        status, detail = problem
        headers = {"WWW-Authenticate": "X-API-Key"} if status == 401 else None
        raise HTTPException(status, detail, headers=headers)


async def require_writer(request: Request, key: str | None = Security(_header)) -> None:
    _check(request, key)


async def require_reader(request: Request, key: str | None = Security(_header)) -> None:
    if not request.app.state.settings.open_reads:
        _check(request, key)


def key_name(request: Request, key: str | None) -> str:
    """Who made a change, for audit trails: the key's configured name (CLIK_API_KEY_NAMES),
    else "key-" + 8 hex digits of its SHA-256 (never the key itself)."""
    if not key:
        return "anonymous"
    for k, name in request.app.state.settings.api_key_names.items():
        if hmac.compare_digest(key.encode(), k.encode()):
            return name
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


async def writer_name(request: Request, key: str | None = Security(_header)) -> str:
    """require_writer, answering with the key's name."""
    _check(request, key)
    return key_name(request, key)
