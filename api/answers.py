"""Conditional answers for rankings: ETag, If-None-Match -> 304, Cache-Control, and the
rendered JSON of recent answers kept per process.

A ranking answer is a pure function of its ETag's parts (api.rankings.answer_etag), so an
answer rendered once can be sent again as bytes while its tag is current, and a client or CDN
holding the tag gets a 304 without a body. `Cache-Control: public, max-age=N` (N =
CLIK_RESULT_MAX_AGE_S) lets a CDN serve it alone for a few seconds; after that it revalidates.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from fastapi import Request, Response


class RenderedAnswers:
    """Rendered JSON bytes by (kind, ETag), an LRU bounded by bytes (this process's copy)."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._bytes = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, key: str) -> bytes | None:
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
            return body

    def put(self, key: str, body: bytes) -> None:
        with self._lock:
            if key not in self._items:
                self._items[key] = body
                self._bytes += len(body)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header's value names the current tag (weak tags count)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return etag in tags


def cache_control(max_age_s: int) -> str:
    return f"public, max-age={max_age_s}"


def conditional(request: Request, etag: str, max_age_s: int, content: Callable[[str], tuple[str, bytes]]) -> Response:
    """304 when the client holds the current tag, else the answer: content() gives its bytes
    and its own tag (api.ranked_answers: from a cache, or computed now)."""
    cache = cache_control(max_age_s)
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache})
    etag, body = content(etag)
    return Response(content=body, media_type="application/json", headers={"ETag": etag, "Cache-Control": cache})
