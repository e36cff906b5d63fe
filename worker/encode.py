"""Encoding products' images for the active model version: pure logic, no Celery.

``encode_products(store, product_ids, encoders, limits)`` reads each product's image source
under the fetch limits, hashes the bytes, skips images whose vector already exists for the
active version, decodes and preprocesses the rest, encodes them in batches, writes the vectors
and marks the products. A broken or forbidden image marks only its product failed; a transient
fetch error (timeout, 5xx, DNS) leaves the product pending and is reported for a retry.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from clik.image_source import FetchLimits, ImageLoadError, content_hash, decode_image, read_source
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


class EncoderCache:
    """Image encoders loaded per model version in this process (a few, least recently used out)."""

    def __init__(self, device: str | None = None, batch_size: int = 32, max_versions: int = 2,
                 loader: Callable[..., ImageEncoder] = ImageEncoder.load):
        self.device = device
        self.batch_size = batch_size
        self.max_versions = max_versions
        self.loader = loader
        self._encoders: OrderedDict[str, ImageEncoder] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, version: ModelVersion) -> ImageEncoder:
        with self._lock:
            encoder = self._encoders.get(version.name)
            if encoder is not None:
                self._encoders.move_to_end(version.name)
                return encoder
            if not version.bundle_uri:
                raise ValueError(f"model version {version.name} has no bundle location")
            bundle = Path(version.bundle_uri.removeprefix("file://"))
            encoder = self.loader(bundle, device=self.device, batch_size=self.batch_size)
            if encoder.version != version.name:
                raise ValueError(f"bundle at {bundle} is version {encoder.version}, "
                                 f"the store expects {version.name}")
            self.loads += 1
            self._encoders[version.name] = encoder
            while len(self._encoders) > self.max_versions:
                self._encoders.popitem(last=False)
            return encoder


def encode_products(store: VectorStore, product_ids: Sequence[str], encoders: EncoderCache,
                    limits: FetchLimits, version: ModelVersion | None = None) -> EncodeReport:
    """Encode the given products for ``version`` (default: the active one). Idempotent."""
    version = version or store.active_version()
    if version is None:
        raise NoActiveVersion("no active model version: register and activate a bundle first")
    report = EncodeReport(version=version.name)
    encoder: ImageEncoder | None = None

    # hash -> products showing that image / its preprocessed pixels (one encode per image)
    owners: dict[str, list[str]] = {}
    pixels: dict[str, torch.Tensor] = {}
    for pid in dict.fromkeys(product_ids):
        try:
            product = store.get_product(pid)
        except ProductNotFound:
            report.missing.append(pid)
            continue
        try:
            data = read_source(product.image_source, limits)
        except ImageLoadError as exc:
            if exc.transient:
                report.retry[pid] = exc.reason
            else:
                _fail(store, report, pid, exc.reason)
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
        try:
            if encoder is None:
                encoder = encoders.get(version)
            pixels[digest] = encoder.transform(decode_image(data, limits))
        except ImageLoadError as exc:
            _fail(store, report, pid, exc.reason)
            continue
        owners[digest] = [pid]

    if pixels:
        assert encoder is not None
        hashes = list(pixels)
        vectors = encoder.encode_pixels(torch.stack([pixels[h] for h in hashes]))
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
