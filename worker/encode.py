"""Encoding products' images for the active model version: pure logic, no Celery.

``encode_products(store, product_ids, encoders, limits)`` reads each product's image source
under the fetch limits, hashes the bytes, skips images whose vector already exists for the
active version, decodes and preprocesses the rest, encodes them in batches, writes the vectors
and marks the products. A broken or forbidden image marks only its product failed; a transient
fetch error (timeout, 5xx, DNS) leaves the product pending and is reported for a retry.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from clik.image_source import FetchLimits, ImageLoadError, content_hash, decode_image, read_source
from clik.model_cache import ModelCache
from clik.runtime import ImageEncoder
from indexer.errors import NoActiveVersion, ProductNotFound
from indexer.records import ModelVersion
from indexer.store import VectorStore

log = logging.getLogger(__name__)


@dataclass
class EncodeReport:
    version: str | None = None
    encoded: list[str] = field(default_factory=list)  # products marked encoded
    new_vectors: int = 0  # vectors computed and written by this call
    reused: int = 0  # products whose image already had a vector for the version
    failed: dict[str, str] = field(default_factory=dict)  # product -> reason (permanent)
    retry: dict[str, str] = field(default_factory=dict)  # product -> reason (transient, still pending)
    missing: list[str] = field(default_factory=list)  # product ids not in the store (deleted)

    def as_dict(self) -> dict:
        return {
            "version": self.version, "encoded": self.encoded, "new_vectors": self.new_vectors,
            "reused": self.reused, "failed": self.failed, "retry": self.retry, "missing": self.missing,
        }


class EncoderCache(ModelCache[ImageEncoder]):
    """Image encoders loaded per model version in this process (clik.model_cache: a few, least
    recently used out; a failed load raises ModelLoadError, a ValueError)."""

    def __init__(self, device: str | None = None, batch_size: int = 32, max_versions: int = 2,
                 loader: Callable[..., ImageEncoder] = ImageEncoder.load):
        self.device = device
        self.batch_size = batch_size
        super().__init__(lambda bundle: loader(bundle, device=device, batch_size=batch_size), max_versions,
                         "image encoder")


def parallel_map(fn: Callable, items: Sequence, threads: int) -> list:
    """fn over items, on `threads` threads when > 1 (fetching and JPEG decoding release the GIL)."""
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items)), thread_name_prefix="clik-decode") as pool:
        return list(pool.map(fn, items))


def _try(fn: Callable, *args):
    """(result, None) or (None, ImageLoadError): lets parallel_map carry failures per item."""
    try:
        return fn(*args), None
    except ImageLoadError as exc:
        return None, exc


def stack_for(encoder: ImageEncoder, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One CPU batch; pinned on CUDA so encode_pixels' non_blocking copy overlaps compute."""
    batch = torch.stack(list(tensors))
    if str(encoder.device).startswith("cuda"):
        batch = batch.pin_memory()
    return batch


def encode_products(store: VectorStore, product_ids: Sequence[str], encoders: EncoderCache,
                    limits: FetchLimits, version: ModelVersion | None = None,
                    decode_threads: int = 1) -> EncodeReport:
    """Encode the given products for ``version`` (default: the active one). Idempotent.

    Fetching and decoding run on ``decode_threads`` threads; the forward pass is one batched
    call (the encoder splits it by its batch size).
    """
    version = version or store.active_version()
    if version is None:
        raise NoActiveVersion("no active model version: register and activate a bundle first")
    report = EncodeReport(version=version.name)

    products = []
    for pid in dict.fromkeys(product_ids):
        try:
            products.append(store.get_product(pid))
        except ProductNotFound:
            report.missing.append(pid)
    fetched = parallel_map(lambda p: _try(read_source, p.image_source, limits), products, decode_threads)

    # hash -> products showing that image / its bytes (one decode and one encode per image)
    owners: dict[str, list[str]] = {}
    to_decode: dict[str, bytes] = {}
    for product, (data, error) in zip(products, fetched):
        pid = product.product_id
        if error is not None:
            if error.transient:
                report.retry[pid] = error.reason
            else:
                _fail(store, report, pid, error.reason)
            continue
        digest = content_hash(data)
        if digest in owners:
            owners[digest].append(pid)
            continue
        if store.has_vector(version.name, digest):
            store.mark_encoded(pid, digest)
            report.encoded.append(pid)
            report.reused += 1
            continue
        owners[digest] = [pid]
        to_decode[digest] = data
    if not to_decode:
        return report

    encoder = encoders.get(version)
    hashes = list(to_decode)
    decoded = parallel_map(lambda h: _try(lambda d: encoder.transform(decode_image(d, limits)), to_decode[h]),
                           hashes, decode_threads)
    pixels: dict[str, torch.Tensor] = {}
    for digest, (tensor, error) in zip(hashes, decoded):
        if error is not None:
            for pid in owners.pop(digest):
                _fail(store, report, pid, error.reason)
        else:
            pixels[digest] = tensor
    if pixels:
        hashes = list(pixels)
        vectors = encoder.encode_pixels(stack_for(encoder, [pixels[h] for h in hashes]))
        store.put_vectors(version.name, list(zip(hashes, vectors)))
        report.new_vectors += len(hashes)
        for digest in hashes:
            for pid in owners[digest]:
                store.mark_encoded(pid, digest)
                report.encoded.append(pid)
    return report


def _fail(store: VectorStore, report: EncodeReport, pid: str, reason: str) -> None:
    log.info("product %s failed: %s", pid, reason)
    report.failed[pid] = reason
    try:
        store.mark_failed(pid, reason)
    except ProductNotFound:  # deleted meanwhile
        report.failed.pop(pid)
        report.missing.append(pid)
