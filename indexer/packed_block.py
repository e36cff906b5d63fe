"""The packed block: one exhibition's vectors for one model version in a single byte string.

Layout (little endian), produced by the Redis Lua script and by the embedded backend alike:

    b"CKB1" | u32 dim | u32 n_scored
    | u32 len | scored ids, '\n'-joined   (row i of the matrix belongs to scored id i)
    | u32 len | pending ids | u32 len | failed ids | u32 len | unknown ids
    | n_scored * dim float16 matrix

One read fetches a whole exhibition instead of one key per product, which is what keeps a
10,000-product ranking in milliseconds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from indexer.errors import StoreError

MAGIC = b"CKB1"
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class ScoringBlock:
    """A decoded block ready to score: float32 rows so the matmul runs at BLAS speed.

    numpy has no fast float16 GEMV, so the fp16 rows are widened once when the block is
    decoded and the float32 copy is what the process cache keeps.
    """

    dim: int
    product_ids: np.ndarray  # object array of str, aligned with matrix rows
    matrix: np.ndarray  # (n, dim) float32, unit rows
    pending: list[str]
    failed: list[str]
    unknown: list[str]

    @property
    def nbytes(self) -> int:
        return self.matrix.nbytes + 64 * len(self.product_ids)


def encode_block(
    dim: int, scored: list[str], rows_fp16: bytes, pending: list[str], failed: list[str], unknown: list[str]
) -> bytes:
    if len(rows_fp16) != len(scored) * dim * 2:
        raise ValueError("matrix bytes do not match the number of scored products")
    parts = [MAGIC, _U32.pack(dim), _U32.pack(len(scored))]
    for ids in (scored, pending, failed, unknown):
        blob = "\n".join(ids).encode()
        parts += [_U32.pack(len(blob)), blob]
    parts.append(rows_fp16)
    return b"".join(parts)


def decode_block(data: bytes) -> ScoringBlock:
    if data[:4] != MAGIC:
        raise StoreError("corrupt packed block (bad magic)")
    dim, n = _U32.unpack_from(data, 4)[0], _U32.unpack_from(data, 8)[0]
    pos = 12
    lists: list[list[str]] = []
    for _ in range(4):
        (length,) = _U32.unpack_from(data, pos)
        pos += 4
        blob = data[pos : pos + length]
        pos += length
        lists.append(blob.decode().split("\n") if length else [])
    scored, pending, failed, unknown = lists
    if len(scored) != n or len(data) - pos != n * dim * 2:
        raise StoreError("corrupt packed block (sizes disagree)")
    rows = np.frombuffer(data, dtype="<f2", count=n * dim, offset=pos).reshape(n, dim)
    return ScoringBlock(
        dim=dim,
        product_ids=np.array(scored, dtype=object),
        matrix=rows.astype(np.float32),
        pending=pending,
        failed=failed,
        unknown=unknown,
    )
