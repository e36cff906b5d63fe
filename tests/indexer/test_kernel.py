"""Ranking kernel and packed-block format, independent of any backend."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.errors import StoreError
from indexer.packed_block import decode_block, encode_block
from indexer.ranking import cosine_scores, ranked_slice, top_indices
from indexer.vectors import normalised_fp16


def test_top_indices_match_full_sort():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(10_000).astype(np.float32)
    np.testing.assert_array_equal(top_indices(scores, 25), np.argsort(-scores, kind="stable")[:25])
    assert len(top_indices(scores[:3], 10)) == 3


def test_ties_are_broken_by_position_across_pages():
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1, 0.5], dtype=np.float32)
    pages = [ranked_slice(scores, o, 2).tolist() for o in range(0, 6, 2)]
    assert pages == [[1, 0], [2, 3], [5, 4]]


def test_cosine_scores_of_unit_rows():
    m = np.stack([normalised_fp16(v, 3) for v in ([1, 0, 0], [1, 1, 0], [0, 0, 5])]).astype(np.float32)
    s = cosine_scores(m, np.array([1, 0, 0], np.float32))
    np.testing.assert_allclose(s, [1, 2**-0.5, 0], atol=1e-3)


def test_packed_block_roundtrip_and_corruption():
    rows = np.arange(12, dtype=np.float16).reshape(3, 4)
    data = encode_block(4, ["a", "b", "c"], rows.tobytes(), ["p"], [], ["u1", "u2"])
    block = decode_block(data)
    assert list(block.product_ids) == ["a", "b", "c"]
    assert (block.pending, block.failed, block.unknown) == (["p"], [], ["u1", "u2"])
    assert block.matrix.dtype == np.float32
    np.testing.assert_array_equal(block.matrix, rows.astype(np.float32))
    with pytest.raises(StoreError):
        decode_block(b"XXXX" + data[4:])
    with pytest.raises(StoreError):
        decode_block(data[:-2])
