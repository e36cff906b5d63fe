"""Conditional answers for rankings: ETag, If-None-Match -> 304, Cache-Control, and the
rendered JSON of recent answers kept per process.

A ranking answer is a pure function of its ETag's parts (api.service.answer_etag), so an
answer rendered once can be sent again as bytes while its tag is current, and a client or CDN
holding the tag gets a 304 without a body. `Cache-Control: public, max-age=N` (N =
CLIK_RESULT_MAX_AGE_S) lets a CDN serve it alone for a few seconds; after that it revalidates.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from fastapi import Request, Response

from api.error_bodies import SafeJSONResponse


class RenderedAnswers:
    """ETag -> rendered JSON bytes, an LRU bounded by bytes."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._bytes = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, etag: str, render: Callable[[], bytes]) -> bytes:
        with self._lock:
            body = self._items.get(etag)
            if body is not None:
                self._items.move_to_end(etag)
                return body
        body = render()
        with self._lock:
            if etag not in self._items:
                self._items[etag] = body
                self._bytes += len(body)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)
        return body


def _matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


def conditional(request: Request, etag: str, max_age_s: int, answers: RenderedAnswers,
                content: Callable[[], dict]) -> Response:
    """304 when the client holds this tag, else the answer (rendered once per tag)."""
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age_s}"}
    if _matches(request, etag):
        return Response(status_code=304, headers=headers)
    body = answers.get(etag, lambda: SafeJSONResponse(content()).body)
    return Response(content=body, media_type="application/json", headers=headers)
