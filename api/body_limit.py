"""Request-body limits, enforced before routing (pure ASGI, no body buffering here).

Why here and not in the routes: FastAPI reads and parses a JSON body before it runs any
dependency, the key check included, so a 100 MB body sent without a key was read, parsed
(seconds of event-loop time, hundreds of MB) and only then refused. This middleware:

* refuses a write (any method but GET/HEAD/OPTIONS) whose X-API-Key is missing or wrong with
  401/403 before one byte of the body is read (the same check as api.auth; the route
  dependencies still run too);
* refuses a declared ``Content-Length`` over the route's limit with 413 at once;
* counts the bytes of a streamed (chunked) body and stops the request with 413 at the limit.

Limits: ``CLIK_MAX_BODY_BYTES`` for every route, ``CLIK_MAX_UPLOAD_BODY_BYTES`` for
``POST /rank/upload`` (image files).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from api.auth import key_problem

_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyTooLarge(Exception):
    """Raised into the app from receive(): the streamed body went over the limit."""


class BodyLimitMiddleware:
    def __init__(
        self, app, *, default_limit: int, route_limits: Mapping[tuple[str, str], int], api_keys: Callable[[], list[str]]
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self.route_limits = dict(route_limits)
        self.api_keys = api_keys

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in _BODYLESS:
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        problem = key_problem(headers.get(b"x-api-key", b"").decode("latin-1"), self.api_keys())
        if problem is not None:
            status, detail = problem
            extra = [(b"www-authenticate", b"X-API-Key")] if status == 401 else []
            return await _respond(send, status, detail, extra)
        limit = self.route_limits.get((scope["method"], scope["path"]), self.default_limit)
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await _respond(send, 400, "invalid Content-Length header")
            if size > limit:
                return await _respond(send, 413, _too_large(limit))
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope, receive, send, limit: int) -> None:
        received = 0
        over = False
        started = False

        async def counting_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message):
            nonlocal started
            if over:  # whatever the app makes of the interrupted read, the answer is 413
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:  # BodyTooLarge itself, or whatever the app wrapped it in
            if not over:
                raise
        if over and not started:
            await _respond(send, 413, _too_large(limit))


def _too_large(limit: int) -> str:
    return (
        f"request body too large: at most {limit} bytes on this route "
        "(CLIK_MAX_BODY_BYTES; uploads: CLIK_MAX_UPLOAD_BODY_BYTES)"
    )


async def _respond(send, status: int, detail: str, extra_headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(extra_headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
