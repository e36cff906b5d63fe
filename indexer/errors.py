"""Exceptions raised by the store, the ranking kernel and the catalogue index.

Callers (API, worker) map these to responses: NotFound -> 404, InvalidInput -> 422,
StoreUnavailable -> 503. Every store error derives from StoreError so one except clause
can catch the family.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by the indexer package."""


class NotFound(StoreError):
    """An id the caller named does not exist."""


class ProductNotFound(NotFound):
    pass


class ExhibitionNotFound(NotFound):
    pass


class VectorNotFound(NotFound):
    pass


class InvalidInput(StoreError, ValueError):
    """Bad input from the caller: also a ValueError so generic validation handlers catch it."""


class InvalidId(InvalidInput):
    pass


class InvalidVector(InvalidInput):
    """Wrong shape or dimension, NaN/inf, or a zero vector that cannot be normalised."""


class VersionNotFound(NotFound, InvalidInput):
    """The model version is not registered: both an unknown id and a bad argument."""


class NoActiveVersion(StoreError):
    """A ranking asked for the active version but none has been activated yet."""


class VersionConflict(InvalidInput):
    """A version re-registered with a different dimension, or another contradiction."""


class VersionInUse(StoreError):
    """Refused: the active version cannot be dropped."""


class StoreUnavailable(StoreError):
    """The backing store cannot be reached (server down, timeout, disk unreadable)."""
