"""Errors the API raises itself, and the mapping of every error family to an HTTP status.

NotFound -> 404, bad input -> 422, wrong model version -> 409, store/model/queue down -> 503.
A bad request never becomes a 500.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from api.error_bodies import SafeJSONResponse, clip_text
from indexer.errors import InvalidInput, NoActiveVersion, NotFound, StoreError, StoreUnavailable

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
    if isinstance(exc, (InvalidInput, ImageUnavailable, UnicodeError)):
        return 422
    if isinstance(exc, VersionMismatch):
        return 409
    return 503  # StoreUnavailable, NoActiveVersion, ModelUnavailable, QueueUnavailable, ...


def public_message(exc: BaseException) -> str:
    """What an anonymous caller may read: outages name the part that is down, never its
    address (a Redis error says host:port; that stays in the log)."""
    if isinstance(exc, (redis.RedisError, ConnectionError, StoreUnavailable)):
        return "store unavailable (see the service log)"
    if isinstance(exc, QueueUnavailable):
        return "encode queue unavailable: the broker cannot be reached (see the service log)"
    if isinstance(exc, NoActiveVersion):
        return f"no active model version: {exc}"
    if isinstance(exc, UnicodeError):
        return "text that is not valid Unicode (a lone surrogate?) cannot be stored"
    return str(exc)


def install_handlers(app: FastAPI, on_error) -> None:
    """on_error(kind, status): a hook for the error counter."""

    def handler(request: Request, exc: Exception) -> SafeJSONResponse:
        status = status_of(exc)
        message = public_message(exc)
        if status >= 500:  # the operator's log has the whole story (addresses included)
            log.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc)
        on_error(type(exc).__name__, status)
        return SafeJSONResponse({"detail": clip_text(message, 2000)}, status_code=status)

    # StoreError covers StoreUnavailable (503), NotFound (404), InvalidInput (422); a version
    # the client asks for that is not the active one is 409 (api.versions.ActiveVersions.resolve)
    for cls in (
        StoreError,
        VersionMismatch,
        ModelUnavailable,
        QueueUnavailable,
        ImageUnavailable,
        redis.RedisError,
        ConnectionError,
        UnicodeError,
    ):
        app.add_exception_handler(cls, handler)
