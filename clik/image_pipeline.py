"""The image-encoding pipeline, one for every path: source → bytes → content hash → decode →
transform → image tower → vector.

Ingestion (worker/encode.py), re-index (worker/reindex.py), ``POST /rank`` (api/rank_sources.py),
the training feature cache (training/features.py) and ``ImageEncoder.encode`` all run these
stages; what differs between them is what they do *between* the stages (which images they
already have) and where the vectors go. The split follows a reader → mapper → writer design:

- **read** (``ImagePipeline.read``): source → bytes (stage ``read``: the fetch under the
  limits, on ``threads`` threads, transient errors tried ``read_attempts`` times) → content
  hash (stage ``hash``: the key of an image in the vector store and the feature cache).
- between the two, the caller's own step: ``by_digest`` groups the items showing the same
  image, and the caller drops the ones it already has a vector or a feature row for (that
  knowledge lives in the store or the cache, not in the model library).
- **map** (``ImagePipeline.encode``): decode (stage ``decode``: real formats only, the pixel
  cap) → transform (stage ``transform``: the tower's resize and normalisation) on a thread pool,
  handed to the tower (stage ``encode``) in batches as they fill, so the threads decode the next
  batch while the tower runs this one.
- **write**: the caller's (``put_vectors``, a feature cache, a ranking), batch by batch.

An item that fails a stage carries the error and the stage's name; the other items go on:
a corrupt image fails its own product, never the batch.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .image_source import (
    DEFAULT_LIMITS,
    FetchLimits,
    ImageInput,
    ImageLoadError,
    content_hash,
    decode_image,
    load_image,
    read_source,
)

READ, HASH, DECODE, TRANSFORM, ENCODE = "read", "hash", "decode", "transform", "encode"
STAGES = (READ, HASH, DECODE, TRANSFORM, ENCODE)

Transform = Callable[[Image.Image], torch.Tensor]
Tower = Callable[[torch.Tensor], np.ndarray]  # a (n, 3, H, W) batch → (n, d) rows


@dataclass(eq=False)
class ImageItem:
    """One image on its way through the stages. ``key`` is the caller's handle (a product id,
    a position in a request, a source); ``source`` what ``read`` starts from: a path or URL is
    fetched, bytes are taken as they are, a PIL image or an array is already decoded (no hash)."""

    key: Any
    source: ImageInput
    data: bytes | None = None  # encoded bytes, after ``read``
    digest: str | None = None  # content hash of ``data``, after ``hash``
    pixels: torch.Tensor | None = None  # the tower's input, after ``transform`` (released once encoded)
    error: ImageLoadError | None = None
    failed_at: str | None = None  # the stage that failed it

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def reason(self) -> str:
        return self.error.reason if self.error is not None else ""

    def fail(self, stage: str, error: ImageLoadError) -> None:
        self.error, self.failed_at = error, stage
        self.data = self.pixels = None


@dataclass
class EncodedBatch:
    """One forward pass: the items encoded together and their rows, in the same order."""

    items: list[ImageItem]
    vectors: np.ndarray


def by_digest(items: Iterable[ImageItem]) -> dict[str, list[ImageItem]]:
    """The items that were read, grouped by content hash in first-seen order: one photo behind
    several products is decoded and encoded once (the group's first item), written for all."""
    groups: dict[str, list[ImageItem]] = {}
    for item in items:
        if item.ok and item.digest is not None:
            groups.setdefault(item.digest, []).append(item)
    return groups


@dataclass(frozen=True)
class ImagePipeline:
    """The stages under one set of limits and threads (cheap to make: one per call is fine)."""

    limits: FetchLimits = DEFAULT_LIMITS
    # Threads reading (network and disk waits) and decoding + transforming (libjpeg and PIL's
    # resize release the GIL), besides the thread that runs the tower. 0: everything on the
    # caller's thread, one stage after the other (the baseline of benchmarks/towers.py --encode).
    threads: int = 1
    read_attempts: int = 1  # tries for a transient read error (timeout, 5xx); 1: report it at once
    retry_backoff_s: float = 0.5  # before the second try; doubles per try
    # JPEG only: let libjpeg scale by 1/2, 1/4 or 1/8 while decoding, down to no less than the
    # transform's output size. Much less work for photos several times that size; the pixels
    # differ slightly from a full decode then resize, so it is a setting (off by default).
    jpeg_draft: bool = False

    # -- read: source → bytes → content hash ----------------------------------------------------
    def read(self, items: Sequence[ImageItem]) -> Sequence[ImageItem]:
        """Fill ``data`` and ``digest`` of every item (or its error); returns the same items."""
        for _ in _map_ordered(self._read_one, items, self.threads):
            pass
        return items

    def _read_one(self, item: ImageItem) -> ImageItem:
        source = item.source
        if isinstance(source, (bytes, bytearray)):
            item.data = bytes(source)
        elif isinstance(source, (str, os.PathLike)):
            try:
                item.data = self._fetch(source)
            except ImageLoadError as exc:
                item.fail(READ, exc)
                return item
        else:  # already decoded (a PIL image, an array): nothing to read or hash
            return item
        item.digest = content_hash(item.data)  # stage "hash"
        return item

    def _fetch(self, source: Any) -> bytes:
        for attempt in range(self.read_attempts):
            try:
                return read_source(source, self.limits)
            except ImageLoadError as exc:
                if not exc.transient or attempt + 1 >= self.read_attempts:
                    raise
                time.sleep(self.retry_backoff_s * 2**attempt)
            except ValueError as exc:  # urllib / idna refuse some URLs before any limit applies
                raise ImageLoadError(f"invalid URL: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- map: decode → transform → image tower --------------------------------------------------
    def decode(self, item: ImageItem, draft_size: tuple[int, int] | None = None) -> Image.Image | None:
        """Stage ``decode``: the item's RGB image, or None with the item failed."""
        try:
            if item.data is not None:
                return decode_image(item.data, self.limits, draft_size=draft_size)
            return load_image(item.source, self.limits)  # a PIL image or an array
        except ImageLoadError as exc:
            item.fail(DECODE, exc)
            return None

    def prepare(self, item: ImageItem, transform: Transform) -> ImageItem:
        """Stages ``decode`` and ``transform`` of one item (run on the pool's threads)."""
        size = getattr(transform, "size", None) if self.jpeg_draft else None
        image = self.decode(item, (size, size) if isinstance(size, int) else None)
        if image is None:
            return item
        try:
            item.pixels = transform(image)
        except ImageLoadError as exc:
            item.fail(TRANSFORM, exc)
        item.data = None  # the bytes are not needed any more; a chunk of 256 should not hold them
        return item

    def encode(
        self, items: Sequence[ImageItem], transform: Transform, tower: Tower, batch_size: int, pin_memory: bool = False
    ) -> Iterator[EncodedBatch]:
        """Decode and transform ``items`` on the threads, and yield one ``EncodedBatch`` per
        forward pass of ``tower`` (``batch_size`` items, the last one smaller). Items failing
        to decode are left out of the batches with their error set. ``pin_memory``: for a CUDA
        tower, so its non-blocking copy overlaps the previous batch's compute."""
        batch: list[ImageItem] = []
        # Decoding runs ahead of the tower by about two batches: enough to keep the tower fed,
        # bounded so that a chunk of thousands does not sit in memory as float tensors.
        ahead = 2 * batch_size + self.threads
        # On a pool even of one thread: the tower runs on the caller's thread meanwhile.
        overlap = self.threads >= 1
        for item in _map_ordered(lambda i: self.prepare(i, transform), items, self.threads, ahead, background=overlap):
            if item.pixels is None:
                continue
            batch.append(item)
            if len(batch) == batch_size:
                yield self._forward(batch, tower, pin_memory)
                batch = []
        if batch:
            yield self._forward(batch, tower, pin_memory)

    def _forward(self, batch: list[ImageItem], tower: Tower, pin_memory: bool) -> EncodedBatch:
        pixels = torch.stack([item.pixels for item in batch])
        if pin_memory:
            pixels = pixels.pin_memory()
        for item in batch:
            item.pixels = None
        return EncodedBatch(batch, tower(pixels))  # stage "encode"


def _map_ordered(
    fn: Callable[[ImageItem], ImageItem],
    items: Sequence[ImageItem],
    threads: int,
    ahead: int | None = None,
    background: bool = False,
) -> Iterator[ImageItem]:
    """fn over items, results in input order; on ``threads`` threads when > 1 (or on one
    thread besides the caller's when ``background``), with at most ``ahead`` items submitted
    and not yet consumed (None: all at once)."""
    if len(items) <= 1 or (threads <= 1 and not background):
        for item in items:
            yield fn(item)
        return
    window = len(items) if ahead is None else max(ahead, threads)
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(items))), thread_name_prefix="clik-image") as pool:
        it = iter(items)
        pending: deque[Future[ImageItem]] = deque(pool.submit(fn, item) for _, item in zip(range(window), it))
        while pending:
            result = pending.popleft().result()
            for item in it:  # keep the window full
                pending.append(pool.submit(fn, item))
                break
            yield result
