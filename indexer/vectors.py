"""Validation and normalisation of vectors entering or querying the store."""

from __future__ import annotations

import hashlib

import numpy as np

from indexer.errors import InvalidId, InvalidVector

# Rows with a norm this far from 1 are renormalised rather than trusted: fp16 rounding alone
# moves the norm by ~1e-3, anything bigger means the caller did not normalise.
_MAX_ID_LEN = 512


def normalised_fp16(vector: object, dim: int) -> np.ndarray:
    """Return the vector as a contiguous float16 array of unit L2 norm, or raise InvalidVector."""
    v = _as_finite_float32(vector, dim, what="vector")
    return (v / _norm(v)).astype(np.float16)


def normalised_query(query: object, dim: int) -> np.ndarray:
    """Return a float32 unit query: scores then are cosines because stored rows are unit too."""
    q = _as_finite_float32(query, dim, what="query")
    return q / _norm(q)


def finite_float32(vector: object) -> np.ndarray:
    """A 1-D finite float32 array of any length (topic embeddings are stored as given)."""
    v = np.asarray(vector, dtype=np.float32)
    if v.ndim != 1 or v.size == 0:
        raise InvalidVector(f"expected a non-empty 1-D vector, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise InvalidVector("vector contains NaN or infinite values")
    return np.ascontiguousarray(v)


def _as_finite_float32(vector: object, dim: int, what: str) -> np.ndarray:
    try:
        v = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidVector(f"{what} is not numeric: {exc}") from exc
    if v.shape != (dim,):
        raise InvalidVector(f"{what} must have shape ({dim},) for this model version, got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise InvalidVector(f"{what} contains NaN or infinite values")
    return v


def _norm(v: np.ndarray) -> np.float32:
    n = np.linalg.norm(v)
    if not n > 1e-12:
        raise InvalidVector("zero vector cannot be L2-normalised")
    return n


def check_id(value: object, what: str) -> str:
    """Ids travel inside keys and newline-joined lists, so they must be short printable text."""
    if not isinstance(value, str) or not value:
        raise InvalidId(f"{what} must be a non-empty string")
    if len(value) > _MAX_ID_LEN or any(c in value for c in "\n\r\x00"):
        raise InvalidId(f"{what} must be at most {_MAX_ID_LEN} chars without newlines or NUL: {value[:40]!r}")
    return value


def hash_digest(image_hash: str) -> bytes:
    """16-byte digest of the image content hash: the compact field name of the vector index.

    The caller's hash (e.g. sha256 hex) is long; storing 64 characters per vector would cost
    a quarter of the vector itself. 128 bits keep collisions out of reach for any catalogue.
    """
    return hashlib.blake2b(image_hash.encode(), digest_size=16).digest()
