"""Warm ranking answers served on the event loop, in front of FastAPI's routing (pure ASGI).

Why: a warm `GET /exhibitions/{id}/representative` is one store read and a copy of bytes, yet
through the FastAPI route it cost ~2.5x a /healthz request. py-spy of a uvicorn worker under
the many-exhibitions load (benchmarks/api_load.py) put a quarter of its CPU in FastAPI's
dependency solving (three dependencies, five validated query parameters) and another third in
the hop into the request threadpool and back; the answer itself was a few percent. Here the
same answer costs a query-string parse, one pipelined read on the store's asyncio connection
(indexer/async_reads.py), the ETag and a dict lookup.

What it answers: GET .../representative and .../ranking whose query it reads completely (only
topk / offset / limit / diverse / model_version, plain digits and booleans, within the
settings' limits), when reads are open or the key is valid, and only when the answer is known:
a 304 for a client holding the current tag, else the bytes this process rendered or the store
holds (api/ranked_answers.py; same tag, headers and body as the route). Everything else (an
answer nobody rendered, any error, an experiment's unit, a query it does not read) goes on to
the route untouched, which answers as it always did. So this never decides an error and never
computes: it is a cache in front of the route, and its invalidation is the tag's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl

from api.answers import cache_control, etag_matches
from api.auth import key_problem
from api.merch import OVERRIDES_RECORD
from api.experiment_serve import prefixed
from api.ranked_answers import PAGE, REPRESENTATIVE, RankingAnswers, Request
from api.schemas import ID_PATTERN
from api.settings import ApiSettings
from indexer.async_reads import ThreadedReads


class UnitExtras(Protocol):
    def plain_extras(self, exhibition_id: str, unit: str, experiment_id: str | None) -> dict | None: ...


_PATH = re.compile(r"/exhibitions/([\w.:@+=~-]{1,512})/(representative|ranking)")
_DIGITS = re.compile(r"[0-9]{1,10}")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
_KINDS = {"representative": REPRESENTATIVE, "ranking": PAGE}
_PARAMS = {
    REPRESENTATIVE: {"topk", "diverse", "model_version", "unit", "experiment"},
    PAGE: {"offset", "limit", "diverse", "model_version"},
}
_EXPERIMENT_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class UnitOf:
    """An experiment's visitor on a representative request (`?unit=`, maybe `&experiment=`)."""

    unit: str
    experiment: str | None


def read_request(path: str, query: bytes, settings: ApiSettings) -> tuple[Request, UnitOf | None] | None:
    """The answer a GET asks for, when its path and query are plain and within the limits the
    route checks, and the unit of an experiment's visitor when the query names one (the request
    is then for the plain answer that visitor may be served); None for anything else (the route
    then answers, 422s included)."""
    match = _PATH.fullmatch(path)
    if match is None:
        return None
    kind = _KINDS[match.group(2)]
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    params = dict(pairs)
    if len(params) != len(pairs) or not params.keys() <= _PARAMS[kind]:
        return None  # repeated or other parameters: the route's
    unit_of = None
    unit, experiment = params.get("unit"), params.get("experiment")
    if unit is not None or experiment is not None:
        # the route's rules: experiment needs unit, model_version goes without it (else a 422)
        if unit is None or "model_version" in params or not 1 <= len(unit) <= 256:
            return None
        if experiment is not None and not (len(experiment) <= 200 and _EXPERIMENT_ID.match(experiment)):
            return None
        unit_of = UnitOf(unit, experiment)
    numbers: dict[str, int] = {}
    for name, default in (("topk", 1), ("offset", 0), ("limit", 50)):
        raw = params.get(name)
        if raw is not None and not _DIGITS.fullmatch(raw):
            return None
        numbers[name] = default if raw is None else int(raw)
    diverse = _BOOLEANS.get(params.get("diverse", "false").lower())
    version = params.get("model_version")
    if diverse is None or (version is not None and not 1 <= len(version) <= 512):
        return None
    top = settings.representative_max_topk
    if kind == REPRESENTATIVE:
        if not 1 <= numbers["topk"] <= top:
            return None
        return Request(kind, match.group(1), 0, numbers["topk"], version, diverse), unit_of
    offset, limit = numbers["offset"], numbers["limit"]
    if not (offset <= 10**9 and 1 <= limit <= settings.page_max) or (diverse and offset + limit > top):
        return None
    return Request(kind, match.group(1), offset, limit, version, diverse), None


class HotAnswers:
    def __init__(
        self,
        app,
        *,
        answers: RankingAnswers,
        settings: ApiSettings,
        reads: Callable[[], ThreadedReads | None],
        routes: Mapping[str, object],
        units: Callable[[], UnitExtras | None] = lambda: None,
    ) -> None:
        self.app = app
        self.answers, self.settings = answers, settings
        self.reads = reads  # opened by the app's lifespan on its loop; None before
        self.routes = routes  # kind -> the route it stands in for (the metrics' route label)
        self.units = units  # the experiments being served (api/experiment_serve.py), or None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            read = read_request(scope["path"], scope.get("query_string", b""), self.settings)
            if read is not None and await self._answered(scope, *read, send):
                return
        await self.app(scope, receive, send)

    async def _answered(self, scope, req: Request, unit_of: UnitOf | None, send) -> bool:
        reads = self.reads()
        if reads is None:
            return False
        extras = None
        if unit_of is not None:
            # a visitor in an experiment: here only when its answer is the plain one and that
            # is known without a store read (the experiment's record cached); else the route
            units = self.units()
            extras = None if units is None else units.plain_extras(req.exhibition_id, unit_of.unit, unit_of.experiment)
            if extras is None:
                return False
        headers = dict(scope.get("headers", ()))
        if (
            not self.settings.open_reads
            and key_problem(headers.get(b"x-api-key", b"").decode("latin-1"), self.settings.api_keys) is not None
        ):
            return False
        answers = self.answers
        try:
            name, stamp, (record,) = await reads.block_stamp(req.exhibition_id, [OVERRIDES_RECORD + req.exhibition_id])
        except Exception:  # unknown exhibition, no active version, store down: the route's answer
            return False
        threshold = answers.known_threshold(name)
        if threshold is None or (req.model_version is not None and req.model_version != name):
            return False
        etag = answers.tag_for(req, name, stamp, record, threshold)
        if extras is not None:  # per request: no tag, never a 304 (as the route answers it)
            fields = [(b"cache-control", b"private, no-store")]
        else:
            fields = [
                (b"etag", etag.encode()),
                (b"cache-control", cache_control(self.settings.result_max_age_s).encode()),
            ]
            if etag_matches(headers.get(b"if-none-match", b"").decode("latin-1"), etag):
                return await self._send(scope, send, req, 304, fields, b"")
        key = answers.memory_key(req, etag)
        body = answers.memory.peek(key)
        source = "memory"
        if body is None:
            try:
                body = await reads.get_answer(key)
            except Exception:
                return False
            if body is None:
                return False  # nobody rendered it: the route computes it
            answers.memory.put(key, body)
            source = "store"
        answers.on_lookup(source)
        if extras is not None:  # the experiment's fields in front; a propensity only where something was served
            body = prefixed(extras if b'"items":[]' not in body else {**extras, "propensity": None}, body)
        fields += [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        return await self._send(scope, send, req, 200, fields, body)

    async def _send(self, scope, send, req: Request, status: int, headers: list, body: bytes) -> bool:
        scope["route"] = self.routes.get(req.kind)  # MetricsMiddleware labels by the route's template
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True
