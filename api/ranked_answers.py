"""Ranking answers found by their ETag before anything is computed.

An answer is a pure function of its ETag's parts (api.rankings.answer_etag): the exhibition's
block stamp, the model version, the overrides' last change, the threshold, the page and the
settings. So a request first reads the stamp and the overrides in one round trip
(store.block_stamp), builds the tag, and then:

1. a client holding the tag gets a 304 (api.answers.conditional);
2. this process rendered that answer already: its bytes are sent again (RenderedAnswers);
3. another API process did: the bytes are read from the store (store.get_answer), shared by all;
4. nobody did: the ranking is computed (topic query, block, scores, rules), rendered, and kept
   in both places under its tag.

Invalidation is exact and free: any change of products, vectors, the exhibition, the overrides
or the active version changes the tag, and an old tag's entry is only left to expire.
The cache keys carry the kind of answer too: /representative?topk=N and /ranking?limit=N at
offset 0 have the same tag (the same ranking) but not the same body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from api.answers import RenderedAnswers
from api.error_bodies import SafeJSONResponse
from api.errors import VersionMismatch
from api.explained import ExplainedRanking
from api.merch import OVERRIDES_RECORD
from api.rankings import answer_etag
from api.service import ClikService

REPRESENTATIVE = "representative"
PAGE = "page"


def ranking_body(r: ExplainedRanking) -> dict:
    return {
        "exhibition_id": r.exhibition_id,
        "model_version": r.model_version,
        "items": [
            {
                "product_id": i.product_id,
                "score": i.score,
                "appeal": i.appeal,
                "topic_fit": i.topic_fit,
                "off_topic": i.off_topic,
                "rank": i.rank,
                "boosts": i.boosts,
                "pinned": i.pinned,
            }
            for i in r.items
        ],
        "total_scored": r.total_scored,
        "pending": r.pending,
        "failed": r.failed,
        "unknown": r.unknown,
        "off_topic": r.off_topic,
        "all_off_topic": r.all_off_topic,
        "topic_fit_threshold": r.threshold,
        "blocked": r.blocked,
        "unavailable": r.unavailable,
        "diverse": r.diverse,
    }


@dataclass(frozen=True)
class Request:
    kind: str  # REPRESENTATIVE or PAGE: the shape of the body
    exhibition_id: str
    offset: int
    limit: int
    model_version: str | None
    diverse: bool

    def render(self, r: ExplainedRanking) -> bytes:
        body = ranking_body(r)
        if self.kind == PAGE:
            body = {**body, "offset": self.offset, "limit": self.limit}
        return bytes(SafeJSONResponse(body).body)


class RankingAnswers:
    def __init__(
        self,
        svc: ClikService,
        memory: RenderedAnswers,
        ttl_s: int,
        on_lookup: Callable[[str], None] = lambda source: None,
    ) -> None:
        self.svc, self.memory, self.ttl_s = svc, memory, ttl_s
        self.on_lookup = on_lookup  # "memory" | "store" | "computed" (metrics)
        self._thresholds: dict[str, float] = {}  # version name -> topic-fit threshold

    def current_tag(self, req: Request) -> str:
        """The tag of the answer as the store stands now: one round trip (stamp + overrides)."""
        svc = self.svc
        name, stamp, (record,) = svc.store.block_stamp(req.exhibition_id, [OVERRIDES_RECORD + req.exhibition_id])
        if req.model_version is not None and req.model_version != name:
            raise VersionMismatch(f"model version {req.model_version!r} is not the active one ({name})")
        _, threshold = svc.queries.topic_fit_model(svc.versions.named(name))
        self._thresholds[name] = threshold
        return self.tag_for(req, name, stamp, record, threshold)

    def tag_for(self, req: Request, name: str, stamp: str, overrides_record: dict | None, threshold: float) -> str:
        """The tag from what block_stamp read (version, stamp, overrides record) and the threshold."""
        overrides = self.svc.merch.remember(req.exhibition_id, overrides_record)
        return answer_etag(
            req.exhibition_id,
            name,
            stamp,
            overrides.updated_at,
            threshold,
            req.offset,
            req.limit,
            req.diverse,
            self.svc.rankings.settings_digest,
        )

    def known_threshold(self, name: str) -> float | None:
        """The topic-fit threshold of version `name` if a request through current_tag saw it
        already, else None: no I/O and no model load (the event loop's hot path asks). Kept
        per version: a version name is the hash of its bundle, so its calibration never
        changes, and CLIK_TOPIC_FIT_THRESHOLD is fixed for the process."""
        return self._thresholds.get(name)

    @staticmethod
    def memory_key(req: Request, etag: str) -> str:
        """Where an answer lives in this process and in the store: its kind and its tag."""
        return f"{req.kind}:{etag.strip(chr(34))}"

    def body(self, req: Request, etag: str) -> tuple[str, bytes]:
        """(tag, bytes) of the answer: from this process, the store, or computed now (then the
        tag is the computed answer's own, which differs from `etag` when the store changed
        in between). Counted by where it came from (on_lookup)."""
        source, tag, content = self.lookup(req, etag)
        self.on_lookup(source)
        return tag, content

    def lookup(self, req: Request, etag: str) -> tuple[str, str, bytes]:
        """(where it came from, tag, bytes), uncounted: `body` for an answer nobody asked for yet
        (api/announced.py renders announced exhibitions ahead of their first read)."""
        key = self.memory_key(req, etag)
        found = self.memory.peek(key)
        if found is not None:
            return "memory", etag, found
        found = self.svc.store.get_answer(key)
        if found is not None:
            self.memory.put(key, found)
            return "store", etag, found
        r = self.svc.rankings.page(req.exhibition_id, req.offset, req.limit, req.model_version, req.diverse)
        content = req.render(r)
        key = self.memory_key(req, r.etag)
        self.memory.put(key, content)
        self.svc.store.put_answer(key, content, self.ttl_s)
        return "computed", r.etag, content
