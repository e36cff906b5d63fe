"""Plain records the store returns. Immutable so cached values cannot be changed by callers."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ProductStatus(str, enum.Enum):
    PENDING = "pending"  # registered, image not fetched/encoded yet
    ENCODED = "encoded"  # image fetched, content hash known, vector written for >= 1 version
    FAILED = "failed"  # fetching or decoding the image failed; see error


class VersionState(str, enum.Enum):
    FILLING = "filling"  # vectors are being written (re-index in progress)
    READY = "ready"  # filled; may be (or has been) activated


@dataclass(frozen=True)
class Product:
    product_id: str
    image_source: str
    status: ProductStatus
    image_hash: str | None = None
    error: str | None = None
    attrs: dict = field(default_factory=dict)  # free-form JSON object for operators (title, brand...)


@dataclass(frozen=True)
class Exhibition:
    exhibition_id: str
    topic: dict[str, str]
    product_ids: tuple[str, ...]
    updated_at: float


@dataclass(frozen=True)
class ExhibitionPage:
    total: int  # exhibitions in the store
    items: list[Exhibition]  # ordered by id


@dataclass(frozen=True)
class ModelVersion:
    name: str  # the bundle hash (docs/architecture.md: a model version is the hash of the exported bundle)
    id: int  # short numeric id used inside storage keys; never reused after a drop
    dim: int
    bundle_uri: str
    state: VersionState
    created_at: float
    active: bool = False


@dataclass(frozen=True)
class Coverage:
    """How much of the catalogue a model version can rank: the figure that gates a rollout
    and that readiness reports."""

    products: int  # registered products (any status)
    encoded: int  # products whose image was fetched (content hash known)
    covered: dict[str, int]  # version name -> encoded products having a vector in that version
    failed: int = 0  # products whose image could not be fetched or decoded (no version can rank them)

    def share(self, version: str) -> float:
        """Products with a vector / products (1.0 for an empty catalogue: nothing is missing)."""
        return self.covered.get(version, 0) / self.products if self.products else 1.0

    def rankable_share(self, version: str) -> float:
        """Products with a vector / products that are not failed: what readiness is judged on
        (a broken image is ingestion's problem, reported as failed, not the version's)."""
        candidates = self.products - self.failed
        return self.covered.get(version, 0) / candidates if candidates else 1.0


@dataclass(frozen=True)
class RankedProduct:
    product_id: str
    score: float  # cosine similarity in [-1, 1]
    rank: int  # 1-based position in the full ranking


@dataclass(frozen=True)
class ExhibitionRanking:
    """An exhibition's products ranked by the store for one model version (store.rank)."""

    exhibition_id: str
    model_version: str
    items: list[RankedProduct]
    total_scored: int  # products that have a vector for model_version
    pending: list[str] = field(default_factory=list)  # no vector yet for this version
    failed: list[str] = field(default_factory=list)  # image could not be encoded
    unknown: list[str] = field(default_factory=list)  # listed in the exhibition, never registered


@dataclass(frozen=True)
class CatalogueChanges:
    """What changed in the catalogue after a generation: an incremental catalogue index re-reads
    these products' vectors (a product without one any more is removed)."""

    generation: int  # the catalogue generation these changes bring an index up to
    product_ids: tuple[str, ...]
