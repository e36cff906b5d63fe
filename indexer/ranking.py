"""The ranking kernel: cosine scores of unit rows against a unit query, top-k and pages."""

from __future__ import annotations

import numpy as np

from indexer.errors import InvalidInput


def cosine_scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Rows and query are unit vectors, so the dot product is the cosine (float32 GEMV)."""
    return matrix @ query


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first. argpartition keeps it O(n) for k << n."""
    return ranked_slice(scores, 0, k)


def ranked_slice(scores: np.ndarray, offset: int, limit: int) -> np.ndarray:
    """Indices of ranks [offset, offset + limit) of the full descending ranking.

    Ties are broken by row position (stable), so paging never shows a product twice.
    """
    if offset < 0 or limit < 0:
        raise InvalidInput("offset and limit must be >= 0")
    n = scores.shape[0]
    end = min(n, offset + limit)
    if offset >= end:
        return np.empty(0, dtype=np.int64)
    if end < n:
        # Everything ranked before `end` lands left of position end-1 after the partition;
        # it can still contain elements tying with the boundary, which the stable sort orders.
        part = np.argpartition(-scores, end - 1)[:end]
        part.sort()  # restore row order so the stable sort below breaks ties by position
    else:
        part = np.arange(n)
    order = part[np.argsort(-scores[part], kind="stable")]
    return order[offset:end]
