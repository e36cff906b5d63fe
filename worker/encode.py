"""Encoding products' images for the active model version: pure logic, no Celery.

``encode_products(store, product_ids, encoders, limits)`` runs the image pipeline
(clik/image_pipeline.py) over the products: read each image source under the fetch limits and
hash the bytes; skip images whose vector already exists for the active version; decode,
transform and encode the rest in batches (decoding on ``decode_threads`` threads while the
tower runs); write the vectors and mark the products. A broken or forbidden image marks only
its product failed; a transient fetch error (timeout, 5xx, DNS) leaves the product pending and
is reported for a retry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

from clik.image_pipeline import ImageItem, ImagePipeline, by_digest
from clik.encoders import ImageEncoder
from clik.image_source import FetchLimits
from clik.model_cache import ModelCache
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
            "version": self.version,
            "encoded": self.encoded,
            "new_vectors": self.new_vectors,
            "reused": self.reused,
            "failed": self.failed,
            "retry": self.retry,
            "missing": self.missing,
        }


class EncoderCache(ModelCache[ImageEncoder]):
    """Image encoders loaded per model version in this process (clik.model_cache: a few, least
    recently used out; a failed load raises ModelLoadError, a ValueError)."""

    def __init__(
        self,
        device: str | None = None,
        batch_size: int = 32,
        max_versions: int = 2,
        loader: Callable[..., ImageEncoder] = ImageEncoder.load,
        backend: str = "torch",
        onnx_cache_dir: str | None = None,
        jpeg_draft: bool = False,
    ):
        self.device = device
        self.batch_size = batch_size
        self.backend = backend  # clik.encoders.pick_backend: torch, onnx or auto
        self.onnx_cache_dir = onnx_cache_dir
        self.jpeg_draft = jpeg_draft  # JPEGs decoded at reduced size by libjpeg (clik.image_pipeline)
        super().__init__(
            lambda bundle: loader(
                bundle, device=device, batch_size=batch_size, backend=backend, onnx_cache_dir=onnx_cache_dir
            ),
            max_versions,
            "image encoder",
        )


def pipeline_for(
    encoders: EncoderCache, limits: FetchLimits, threads: int, read_attempts: int = 1, retry_backoff_s: float = 0.5
) -> ImagePipeline:
    """The image pipeline of one encode call, with the draft-mode setting of the encoders."""
    return ImagePipeline(
        limits,
        threads=threads,
        read_attempts=read_attempts,
        retry_backoff_s=retry_backoff_s,
        jpeg_draft=encoders.jpeg_draft,
    )


def encode_products(
    store: VectorStore,
    product_ids: Sequence[str],
    encoders: EncoderCache,
    limits: FetchLimits,
    version: ModelVersion | None = None,
    decode_threads: int = 1,
) -> EncodeReport:
    """Encode the given products for ``version`` (default: the active one). Idempotent.

    Reading and decoding run on ``decode_threads`` threads; the forward passes (batches of the
    encoder's batch size) on this one, while the threads decode the next batch.
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
    pipeline = pipeline_for(encoders, limits, decode_threads)
    items = pipeline.read([ImageItem(p.product_id, p.image_source) for p in products])
    for item in items:
        if item.error is not None and item.error.transient:
            report.retry[item.key] = item.reason
        elif item.error is not None:
            _fail(store, report, item.key, item.reason)

    # One decode and one encode per image, however many products show it.
    owners: dict[str, list[str]] = {}  # content hash -> products showing that image
    to_encode: dict[str, ImageItem] = {}
    for digest, group in by_digest(items).items():
        pids = [item.key for item in group]
        if store.has_vector(version.name, digest):
            for pid in pids:
                store.mark_encoded(pid, digest)
                report.encoded.append(pid)
            report.reused += len(pids)
            continue
        owners[digest] = pids
        to_encode[digest] = group[0]
    if not to_encode:
        return report

    encoder = encoders.get(version)
    for batch in pipeline.encode(
        list(to_encode.values()), encoder.transform, encoder.encode_pixels, encoder.batch_size, encoder.pins_memory
    ):
        hashes = [digest for item in batch.items if (digest := item.digest)]
        store.put_vectors(version.name, list(zip(hashes, batch.vectors)))
        report.new_vectors += len(hashes)
        for digest in hashes:
            for pid in owners[digest]:
                store.mark_encoded(pid, digest)
                report.encoded.append(pid)
    for digest, item in to_encode.items():
        if not item.ok:  # decoding failed: every product showing that image fails with it
            for pid in owners[digest]:
                _fail(store, report, pid, item.reason)
    return report


def _fail(store: VectorStore, report: EncodeReport, pid: str, reason: str) -> None:
    log.info("product %s failed: %s", pid, reason)
    report.failed[pid] = reason
    try:
        store.mark_failed(pid, reason)
    except ProductNotFound:  # deleted meanwhile
        report.failed.pop(pid)
        report.missing.append(pid)
