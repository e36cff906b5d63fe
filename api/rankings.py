"""Rankings of an exhibition's products: a page of them, every item explained, and the ETag
that names the answer.

A ranking is the topic's query (api.queries) against the exhibition's packed block, scored with
the topic-fit model (api.explained), with the exhibition's business rules applied (overrides,
availability, boosts, the diverse selection: api.merch, api.merch_rank). Blocks are scored and
their facets aligned once per decoded block (api.per_block_cache).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Mapping

from api.explained import ExplainedRanking, explain
from api.merch import MerchState, Overrides, facet_of
from api.merch_rank import Aligned, Rules, align
from api.per_block_cache import PerBlockCache
from api.queries import RankingQueries
from api.settings import ApiSettings
from api.topics import cache_key, clean_topic
from api.versions import ActiveVersions
from clik.diverse import DiverseOptions
from indexer.errors import InvalidInput
from indexer.packed_block import ScoringBlock
from indexer.records import ModelVersion
from indexer.store import VectorStore


def answer_etag(
    exhibition_id: str,
    version: str,
    stamp: str,
    overrides_at: float | None,
    threshold: float,
    offset: int,
    limit: int,
    diverse: bool,
    settings_digest: str,
) -> str:
    """A ranking answer is a pure function of these: the exhibition, the model version (its
    calibration with it), the block stamp (products, attrs, vectors, the exhibition's members
    and topic: generations, not unique across exhibitions), the overrides' last change, the
    threshold, the page and the settings. Any change of one changes the tag; the same state
    gives the same tag in every API process."""
    text = (
        f"{exhibition_id}|{version}|{stamp}|{overrides_at}|{threshold}|{offset}|{limit}|{int(diverse)}|"
        f"{settings_digest}"
    )
    return '"' + hashlib.blake2b(text.encode(), digest_size=12).hexdigest() + '"'


class Rankings:
    def __init__(
        self,
        settings: ApiSettings,
        store: VectorStore,
        versions: ActiveVersions,
        queries: RankingQueries,
        merch: MerchState,
    ) -> None:
        self.settings = settings
        self.store = store
        self.versions = versions
        self.queries = queries
        self.merch = merch
        self.fits = PerBlockCache(64 * 1024 * 1024)  # each block scored for a topic
        self.aligned = PerBlockCache(16 * 1024 * 1024)  # each block's business-rule facets
        self.diverse_options = DiverseOptions(
            settings.diverse_trade_off, settings.diverse_duplicate_threshold, settings.diverse_pool
        )
        self._settings_digest: str | None = None

    @property
    def settings_digest(self) -> str:
        """The settings an answer depends on beyond the store (boosts, diverse options)."""
        if self._settings_digest is None:
            parts = repr((sorted(self.settings.boosts.items()), self.diverse_options))
            self._settings_digest = hashlib.blake2b(parts.encode(), digest_size=8).hexdigest()
        return self._settings_digest

    def representative(
        self, exhibition_id: str, topk: int, model_version: str | None, diverse: bool = False
    ) -> ExplainedRanking:
        return self.page(exhibition_id, 0, topk, model_version, diverse)

    def page(
        self, exhibition_id: str, offset: int, limit: int, model_version: str | None, diverse: bool = False
    ) -> ExplainedRanking:
        """Ranks [offset, offset+limit) of the exhibition with the active version, every item
        explained (appeal, topic fit, score, boosts) and ordered by the topic-fit gate, with the
        exhibition's overrides, availability and boosts applied; `diverse`: the greedy MMR
        selection (clik.diverse)."""
        if offset < 0 or limit < 1:
            raise InvalidInput("offset must be >= 0 and limit >= 1")
        topic = self.store.get_exhibition_topic(exhibition_id)
        return self.versions.ranked(
            model_version,
            lambda version, requested: self._rank_with(
                exhibition_id, topic, version, requested, offset, limit, diverse
            ),
        )

    def page_of(
        self, exhibition_id: str, offset: int, limit: int, version_name: str, diverse: bool = False
    ) -> ExplainedRanking:
        """The same ranking by a registered version that need not be the active one (an
        experiment's arm; the offline replay of a candidate). Raises VersionNotFound."""
        if offset < 0 or limit < 1:
            raise InvalidInput("offset must be >= 0 and limit >= 1")
        topic = self.store.get_exhibition_topic(exhibition_id)
        version = self.store.get_version(version_name)
        return self._rank_with(exhibition_id, topic, version, version.name, offset, limit, diverse)

    def rules(self, overrides: Overrides, block: ScoringBlock, diverse: bool) -> tuple[Rules | None, Aligned | None]:
        """The exhibition's business rules (None when nothing applies: the plain ranking). The
        facets of the block's products are read once per decoded block (api.per_block_cache)."""
        aligned = self.aligned.get(
            block,
            (),
            lambda: align(
                block,
                {
                    pid: facet_of(attrs, strict=False)
                    for pid, attrs in self.store.get_attrs([str(p) for p in block.product_ids]).items()
                },
            ),
        )
        boosts = self.settings.boosts if overrides.boosts is None else overrides.boosts
        if overrides.empty and not aligned.any_facet and not boosts and not diverse:
            return None, None
        rules = Rules(overrides, boosts, self.diverse_options if diverse else None)
        return rules, aligned

    def _rank_with(
        self,
        exhibition_id: str,
        topic: Mapping[str, object],
        version: ModelVersion,
        requested: str | None,
        offset: int,
        limit: int,
        diverse: bool,
    ) -> ExplainedRanking:
        query, topic_emb = self.queries.query_and_topic(version, topic)
        name, stamp, block = self.store.stamped_block(exhibition_id, requested)
        if name != version.name:  # the store resolved another active version
            return ExplainedRanking(exhibition_id, name, [], 0)
        calibration, threshold = self.queries.topic_fit_model(version)
        # read once: the rules applied and the ETag must describe the same overrides
        overrides = self.merch.overrides(exhibition_id)
        rules, aligned = self.rules(overrides, block, diverse)
        ranked = explain(
            exhibition_id,
            name,
            block,
            query,
            topic_emb,
            calibration,
            threshold,
            offset,
            limit,
            self.fits,
            cache_key(clean_topic(topic)),
            rules,
            aligned,
        )
        return replace(
            ranked,
            etag=answer_etag(
                exhibition_id,
                name,
                stamp,
                overrides.updated_at,
                threshold,
                offset,
                limit,
                diverse,
                self.settings_digest,
            ),
        )
