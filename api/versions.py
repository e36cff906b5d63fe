"""Which model version a request ranks with: the active one, read from the store.

Why a guess: reading the active version first would cost every ranking one store round trip
more. Instead a ranking runs with the version that was active last time and lets the store
resolve the active version inside the ranking call itself; when the store ranked with another
one (a switch happened), the result is thrown away and redone with that version's own query,
so a query and vectors of two versions never meet in a returned ranking.
"""

from __future__ import annotations

from typing import Callable

from api.errors import ModelUnavailable, VersionMismatch
from api.explained import ExplainedRanking
from indexer.errors import InvalidVector
from indexer.records import ModelVersion
from indexer.store import VectorStore


class ActiveVersions:
    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self._guess: ModelVersion | None = None  # the active version seen last

    def resolve(self, requested: str | None = None) -> ModelVersion:
        """The active version, read from the store on every call (a re-index may switch it);
        `requested`, when given, must be that one (409 otherwise)."""
        active = self.store.active_version()
        if active is None:
            raise ModelUnavailable("no active model version: register and activate a bundle first")
        if requested is not None and requested != active.name:
            raise VersionMismatch(f"model version {requested!r} is not the active one ({active.name})")
        return active

    def named(self, name: str) -> ModelVersion:
        """The record of a version the store just named as active (the one seen last, or read)."""
        guess = self._guess
        if guess is not None and guess.name == name:
            return guess
        version = self.store.get_version(name)
        if version.active:
            self._guess = version
        return version

    def ranked(
        self, model_version: str | None, rank: Callable[[ModelVersion, str | None], ExplainedRanking]
    ) -> ExplainedRanking:
        """`rank(version, requested)` with the guessed version first (requested None: the store
        resolves the active one), and again with the version read from the store when the
        store ranked with another one."""
        guess = self._guess
        if guess is not None and model_version in (None, guess.name):
            try:
                result: ExplainedRanking | None = rank(guess, None)
            except (InvalidVector, ModelUnavailable):  # another dimension now / old bundle gone
                result = None
            if result is not None and result.model_version == guess.name:
                return result
        version = self.resolve(model_version)
        self._guess = version
        return rank(version, version.name)
