"""Errors the API raises itself, and the mapping of every error family to an HTTP status.

NotFound -> 404, bad input -> 422, wrong model version -> 409, store/model/queue down -> 503.
A bad request never becomes a 500.
"""
from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from indexer.errors import InvalidInput, NoActiveVersion, NotFound, StoreError

log = logging.getLogger(__name__)


class VersionMismatch(Exception):
    """The request named a model version that is not the active one."""


class ModelUnavailable(Exception):
    """No model can serve right now (no active version, bundle missing or broken)."""


class QueueUnavailable(Exception):
    """The encode queue (broker) refused or could not be reached."""


class ImageUnavailable(Exception):
    """A product image could not be fetched or decoded (its reason is operator-readable)."""


def status_of(exc: BaseException) -> int:
    if isinstance(exc, NotFound) and not isinstance(exc, InvalidInput):
        return 404
    if isinstance(exc, (InvalidInput, ImageUnavailable)):
        return 422
    if isinstance(exc, VersionMismatch):
        return 409
    return 503  # StoreUnavailable, NoActiveVersion, ModelUnavailable, QueueUnavailable, ...


def install_handlers(app: FastAPI, on_error) -> None:
    """on_error(kind, status): a hook for the error counter."""

    def handler(request: Request, exc: Exception) -> JSONResponse:
        status = status_of(exc)
        if isinstance(exc, (redis.RedisError, ConnectionError)):
            message = f"store unavailable: {exc}"
        elif isinstance(exc, NoActiveVersion):
            message = f"no active model version: {exc}"
        else:
            message = str(exc)
        if status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.url.path, status, message)
        on_error(type(exc).__name__, status)
        return JSONResponse({"detail": message}, status_code=status)

    # StoreError covers StoreUnavailable (503), NotFound (404), InvalidInput (422); a version
    # the client asks for that is not the active one is 409 (ClikService.resolve_version)
    for cls in (StoreError, VersionMismatch, ModelUnavailable, QueueUnavailable, ImageUnavailable,
                redis.RedisError, ConnectionError):
        app.add_exception_handler(cls, handler)
