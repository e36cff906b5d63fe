"""Request and response bodies (JSON). Validation errors name the field (FastAPI's 422 `loc`)."""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

# Product and exhibition ids: letters and digits of any script, and . _ - : @ + = ~ (1-512).
# Why so few: an id is a path segment of every route, a store key part and an entry of
# newline-joined lists; "/" could never be read back through GET /products/{id}, whitespace
# and controls are invisible in logs and UIs, "%", "?", "#" mean something in a URL.
ID_PATTERN = r"^[\w.:@+=~-]+$"
ID_ALPHABET = "letters and digits (any script) and . _ - : @ + = ~"
Id = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=ID_PATTERN)]
ImageSource = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[^\n\r\x00]+$")]
# printable ASCII only: internationalised host names must be sent punycode-encoded
HttpUrl = Annotated[str, StringConstraints(min_length=8, max_length=2048, pattern=r"^https?://[!-~]+$")]


def invalid_unicode_at(value: Any, where: str = "") -> str | None:
    """Where the first lone surrogate is in a JSON value (keys included), or None. JSON may
    spell one (``"\\ud800"``); UTF-8 cannot carry it, so the store, the tokenizer and every
    response would fail on it later: refused at the door instead."""
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "."
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = invalid_unicode_at(key, f"{where}.<key>") or invalid_unicode_at(item, f"{where}.{key!r:.40}")
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for n, item in enumerate(value):
            found = invalid_unicode_at(item, f"{where}[{n}]")
            if found:
                return found
    return None


class Body(BaseModel):
    """A request body: unknown keys refused, text must be valid Unicode."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = invalid_unicode_at(data)
        if where is not None:
            raise ValueError(f"text must be valid Unicode: lone surrogate at {where}")
        return data


class Topic(Body):
    """Exhibition topic (clik.topic): unknown keys are refused, missing ones are empty."""

    name: str = Field("", max_length=1000, examples=["Men's summer linen"])
    desc: str = Field("", max_length=4000)
    date: str = Field("", max_length=40, description="ISO date; empty means today")
    cat1: str = Field("", max_length=200)
    cat2: str = Field("", max_length=200)
    cat3: str = Field("", max_length=200)
    cat4: str = Field("", max_length=200)
    kwds: str | list[Annotated[str, StringConstraints(max_length=200)]] = Field(
        "", description="comma-separated string or a list of keywords"
    )

    @field_validator("kwds")
    @classmethod
    def _join_keywords(cls, value: str | list[str]) -> str:
        if isinstance(value, list):
            value = ",".join(value)
        if len(value) > 4000:
            raise ValueError("at most 4000 characters of keywords")
        return value

    def attrs(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v}


def check_image_source(value: str) -> str:
    """Refuse now what the worker could never fetch (it would only fail later, out of sight)."""
    parts = urllib.parse.urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ValueError("URL without a host")
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
        parts.hostname.encode("idna")  # UnicodeError (a ValueError) when no DNS name can be made
    elif scheme != "file" and len(scheme) > 1:  # one letter: a Windows drive, a path
        raise ValueError(f"unsupported URL scheme {scheme!r}: use http(s), file:// or a path")
    return value


class ProductIn(Body):
    image_url: ImageSource = Field(description="http(s) URL (or a path below the worker's file roots)")
    attrs: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "free-form, shown to operators; a few drive merchandising (docs/merchandising.md): "
            "family (diverse selections: one per family), available=false / sold_out / hidden "
            "(never shown), numbers (score boosts)"
        ),
    )

    @field_validator("attrs")
    @classmethod
    def _merch_attrs(cls, value: dict[str, Any]) -> dict[str, Any]:
        from api.merch import facet_of
        from indexer.errors import InvalidInput

        try:
            facet_of(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("image_url")
    @classmethod
    def _fetchable(cls, value: str) -> str:
        return check_image_source(value)


class ProductBatchItem(ProductIn):
    product_id: Id


class ProductBatch(Body):
    products: list[ProductBatchItem] = Field(min_length=1)


class ProductAccepted(BaseModel):
    product_id: str
    status: str
    queued: bool = Field(description="sent for encoding (false: this image is already encoded)")


class BatchAccepted(BaseModel):
    accepted: int
    queued: list[str]


class ProductOut(BaseModel):
    product_id: str
    image_url: str
    status: str
    image_hash: str | None
    error: str | None
    attrs: dict[str, Any]


class ExhibitionIn(Body):
    topic: Topic
    product_ids: list[Id] = Field(default_factory=list)


class ExhibitionOut(BaseModel):
    exhibition_id: str
    topic: dict[str, Any]
    product_ids: list[str]
    updated_at: float


class ExhibitionSummary(BaseModel):
    exhibition_id: str
    name: str
    products: int
    updated_at: float


class ExhibitionList(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[ExhibitionSummary]


APPEAL = (
    "CLIK's ranking score: cosine of the image vector with the group query, whose appeal-prior "
    "coordinate adds how attractive the image looks whatever the topic"
)


class SearchItem(BaseModel):
    product_id: str
    score: float = Field(description="cosine of the image with the topic's ranking query")
    rank: int


class RankedItem(BaseModel):
    product_id: str
    score: float = Field(
        description="orders the ranking: appeal + how much the product looks like its exhibition; below every fitting product when off_topic"
    )
    appeal: float = Field(description=APPEAL)
    topic_fit: float = Field(description="calibrated probability that the product belongs to the topic")
    off_topic: bool = Field(description="topic_fit below topic_fit_threshold")
    rank: int
    boosts: dict[str, float] = Field(
        default_factory=dict, description="score modifiers applied: attr -> weight * value (included in score)"
    )
    pinned: bool = Field(False, description="placed at this position by the exhibition's overrides")


class RankingOut(BaseModel):
    exhibition_id: str
    model_version: str
    items: list[RankedItem]
    total_scored: int = Field(description="products with a vector for this model version")
    pending: list[str] = Field(description="not encoded yet for this version")
    failed: list[str] = Field(description="image could not be fetched or decoded")
    unknown: list[str] = Field(description="listed but never registered as products")
    off_topic: list[str] = Field(description="scored products that look off-topic, most appealing first")
    all_off_topic: bool = Field(description="every scored product looks off-topic (so the first one does too)")
    topic_fit_threshold: float
    blocked: list[str] = Field(default_factory=list, description="scored products the overrides block (never shown)")
    unavailable: list[str] = Field(
        default_factory=list, description="scored products sold out or hidden (attrs), never shown"
    )
    diverse: bool = Field(False, description="the items are the diverse (MMR) selection")


class RankingPage(RankingOut):
    offset: int
    limit: int


class RankRequest(Body):
    topic: Topic
    image_urls: list[HttpUrl] = Field(min_length=1)
    topk: int | None = Field(None, ge=1)


class RankedImage(BaseModel):
    index: int = Field(description="position in the request (URLs first, then uploads)")
    source: str
    score: float
    rank: int
    reused: bool = Field(description="vector taken from the store (same image content, active version)")
    appeal: float = Field(description=APPEAL)
    topic_fit: float = Field(description="calibrated probability that the image belongs to the topic")
    off_topic: bool = Field(description="topic_fit below the threshold")


class ImageError(BaseModel):
    index: int
    source: str
    reason: str


class RankOut(BaseModel):
    model_version: str
    items: list[RankedImage]
    errors: list[ImageError]


class SearchOut(BaseModel):
    model_version: str
    query: str
    items: list[SearchItem]


class Health(BaseModel):
    status: str


class CoverageOut(BaseModel):
    products: int  # registered products
    with_vectors: int  # products the active version can rank
    failed: int  # products whose image could not be read (no version can rank them)
    share: float  # with_vectors / (products - failed)


class Ready(BaseModel):
    status: str
    model_version: str | None = None
    loaded_versions: list[str] = []
    coverage: CoverageOut | None = None
    problems: list[str] = []


class OverridesIn(Body):
    pinned: dict[Id, int] = Field(
        default_factory=dict, description="product id -> position (1 = the hero image) it keeps"
    )
    blocked: list[Id] = Field(default_factory=list, description="products never shown")
    boosts: dict[Annotated[str, StringConstraints(min_length=1, max_length=200)], float] | None = Field(
        None,
        description="numeric product attr -> weight added to the score as weight * value; null: the global CLIK_BOOSTS",
    )

    @field_validator("pinned")
    @classmethod
    def _positions(cls, value: dict[str, int]) -> dict[str, int]:
        for pid, pos in value.items():
            if pos < 1 or pos > 10_000:
                raise ValueError(f"position of {pid!r} must be between 1 and 10000")
        return value

    @field_validator("boosts")
    @classmethod
    def _finite(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        import math

        for name, weight in (value or {}).items():
            if not math.isfinite(weight):
                raise ValueError(f"weight of {name!r} must be a finite number")
        return value


class OverridesChange(BaseModel):
    at: float
    by: str = Field(description="name of the API key that made the change")
    action: str
    pinned: dict[str, int]
    blocked: list[str]
    boosts: dict[str, float] | None


class OverridesOut(BaseModel):
    exhibition_id: str
    pinned: dict[str, int]
    blocked: list[str]
    boosts: dict[str, float] | None = Field(description="null: the global weights apply")
    boosts_in_force: dict[str, float]
    updated_at: float | None
    updated_by: str | None
    history: list[OverridesChange] = Field(description="the last changes, oldest first")
