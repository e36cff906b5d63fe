"""Merchandiser state: per-exhibition overrides (pins, blocks, boost weights), kept as small
JSON records in the store (put_job/get_job) and cached per process, and the product facets the
ranking needs (family, availability, numeric attributes), read from the products' own attrs.

Why records and a TTL for overrides: the ranking's hot path is one store round trip (the block
stamp). Overrides change rarely and are read on every ranking, so each process keeps them for
`merch_cache_s` (default 1 s): a warm request costs no extra round trip, a change made through
another API process is seen within that time, and one made through this process at once.

Facets come from the product attrs in the store (one pipelined read per decoded block, kept
beside it: api.per_block_cache). A change of a product's attrs bumps its exhibitions'
blocks (indexer), so a sold-out product leaves the ranking with the very next block:
  family       attrs.family (string): at most one per family in a diverse selection
  unavailable  attrs.available is false, attrs.sold_out or attrs.hidden is true
  numeric      every number attr (not booleans): what boosts multiply
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from indexer.errors import InvalidInput
from indexer.store import VectorStore

OVERRIDES_RECORD = "merch:overrides:"
AVAILABILITY_ATTRS = {"available": False, "sold_out": True, "hidden": True}  # attr -> value that hides
AUDIT_KEEP = 100  # changes kept in an exhibition's history


@dataclass(frozen=True)
class Facet:
    family: str | None = None
    unavailable: bool = False
    numeric: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        out: dict = {}
        if self.family:
            out["f"] = self.family
        if self.unavailable:
            out["u"] = 1
        if self.numeric:
            out["n"] = dict(self.numeric)
        return out

    @classmethod
    def from_json(cls, d: Mapping) -> "Facet":
        return cls(d.get("f"), bool(d.get("u")), dict(d.get("n", {})))


def facet_of(attrs: Mapping[str, object], where: str = "attrs", strict: bool = True) -> Facet:
    """The facet of a product's attrs. strict (a PUT): InvalidInput naming the attr when one has
    the wrong type; not strict (attrs already stored, perhaps before these rules existed): such
    an attr is ignored."""

    def usable(name: str, ok: bool) -> bool:
        if not ok and strict:
            raise InvalidInput(f"{where}.{name} must be " + ("a string" if name == "family" else "true or false"))
        return ok

    flags = [
        attrs[name] is hiding
        for name, hiding in AVAILABILITY_ATTRS.items()
        if name in attrs and usable(name, isinstance(attrs[name], bool))
    ]  # every one checked
    unavailable = any(flags)
    family = attrs.get("family")
    if family is not None and not usable("family", isinstance(family, (str, int)) and not isinstance(family, bool)):
        family = None
    numeric = {
        k: float(v)
        for k, v in attrs.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and k != "family"
    }
    return Facet(str(family) if family not in (None, "") else None, unavailable, numeric)


@dataclass(frozen=True)
class Overrides:
    exhibition_id: str
    pinned: Mapping[str, int] = field(default_factory=dict)  # product id -> position (1-based)
    blocked: frozenset[str] = frozenset()
    boosts: Mapping[str, float] | None = None  # attr -> weight; None: the global weights
    updated_at: float | None = None
    updated_by: str | None = None
    history: tuple[dict, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.pinned and not self.blocked and self.boosts is None

    def to_json(self) -> dict:
        return {
            "pinned": dict(self.pinned),
            "blocked": sorted(self.blocked),
            "boosts": self.boosts,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "history": list(self.history),
        }

    @classmethod
    def from_json(cls, exhibition_id: str, d: Mapping | None) -> "Overrides":
        if not d:
            return cls(exhibition_id)
        return cls(
            exhibition_id,
            {k: int(v) for k, v in d.get("pinned", {}).items()},
            frozenset(d.get("blocked", ())),
            d.get("boosts"),
            d.get("updated_at"),
            d.get("updated_by"),
            tuple(d.get("history", ())),
        )


def check_overrides(pinned: Mapping[str, int], blocked: list[str]) -> None:
    both = sorted(set(pinned) & set(blocked))
    if both:
        raise InvalidInput(f"body.blocked: {both[0]!r} is also pinned")
    positions = sorted(pinned.values())
    for a, b in zip(positions, positions[1:]):
        if a == b:
            raise InvalidInput(f"body.pinned: two products pinned at position {a}")


class _Timed:
    __slots__ = ("value", "read_at")

    def __init__(self, value, read_at: float) -> None:
        self.value, self.read_at = value, read_at


class MerchState:
    """The process's view of the merch records (see the module doc for the caching)."""

    def __init__(self, store: VectorStore, ttl_s: float) -> None:
        self.store, self.ttl_s = store, ttl_s
        self._lock = threading.Lock()
        self._overrides: dict[str, _Timed] = {}

    # -- overrides ------------------------------------------------------------------------------
    def overrides(self, exhibition_id: str) -> Overrides:
        cached = self._overrides.get(exhibition_id)
        if cached is not None and time.monotonic() - cached.read_at < self.ttl_s:
            return cached.value
        return self.remember(exhibition_id, self.store.get_job(OVERRIDES_RECORD + exhibition_id))

    def remember(self, exhibition_id: str, record: Mapping | None) -> Overrides:
        """The overrides of a record read just now (with another read, in one round trip)."""
        value = Overrides.from_json(exhibition_id, record)
        if len(self._overrides) > 10_000:  # bounded: exhibitions come and go
            self._overrides.clear()
        self._overrides[exhibition_id] = _Timed(value, time.monotonic())
        return value

    def write_overrides(
        self,
        exhibition_id: str,
        pinned: Mapping[str, int],
        blocked: list[str],
        boosts: Mapping[str, float] | None,
        who: str,
        action: str,
    ) -> Overrides:
        with self._lock:
            old = Overrides.from_json(exhibition_id, self.store.get_job(OVERRIDES_RECORD + exhibition_id))
            now = time.time()
            entry = {
                "at": now,
                "by": who,
                "action": action,
                "pinned": dict(pinned),
                "blocked": sorted(blocked),
                "boosts": None if boosts is None else dict(boosts),
            }
            new = Overrides(
                exhibition_id,
                dict(pinned),
                frozenset(blocked),
                None if boosts is None else dict(boosts),
                now,
                who,
                (*old.history, entry)[-AUDIT_KEEP:],
            )
            self.store.put_job(OVERRIDES_RECORD + exhibition_id, new.to_json())
            self._overrides[exhibition_id] = _Timed(new, time.monotonic())
            return new

    def prune(self, exhibition_id: str, product_ids: set[str], who: str) -> None:
        """The exhibition's product list changed: pins and blocks of products that left it go."""
        current = Overrides.from_json(exhibition_id, self.store.get_job(OVERRIDES_RECORD + exhibition_id))
        pinned = {p: pos for p, pos in current.pinned.items() if p in product_ids}
        blocked = [p for p in current.blocked if p in product_ids]
        if len(pinned) != len(current.pinned) or len(blocked) != len(current.blocked):
            self.write_overrides(
                exhibition_id, pinned, blocked, current.boosts, who, "pruned: products left the exhibition"
            )
