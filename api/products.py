"""Products apart from HTTP: storing them and queueing their encoding, and reading a product's
image for GET /products/{id}/image."""

from __future__ import annotations

import io

from PIL import Image

from api.encode_queue import EncodeQueue
from api.errors import ImageUnavailable
from api.fetch_limits import StoreFetchLimits
from api.merch import facet_of
from api.metrics import ApiMetrics
from clik.image_source import ImageLoadError, read_source
from indexer.records import Product, ProductStatus
from indexer.store import VectorStore


class Products:
    def __init__(self, store: VectorStore, queue: EncodeQueue, metrics: ApiMetrics, limits: StoreFetchLimits) -> None:
        self.store = store
        self.queue = queue
        self.metrics = metrics
        self.limits = limits

    def put(self, items: list[tuple[str, str, dict]]) -> list[tuple[Product, bool]]:
        """Store the products, queue those whose image is not encoded yet (a retried PUT of a
        pending one is queued again: the worker skips images it already has)."""
        for _, _, attrs in items:  # refuses bad business-rule attrs before anything is written
            facet_of(attrs or {})
        stored = [self.store.put_product(pid, src, attrs) for pid, src, attrs in items]
        queued = [p.product_id for p in stored if p.status is not ProductStatus.ENCODED]
        if queued:
            self.queue.submit(queued)
            self.metrics.encodes_submitted.inc(len(queued))
        return [(p, p.status is not ProductStatus.ENCODED) for p in stored]

    def image(self, product_id: str) -> tuple[bytes, str]:
        """(bytes, media type) of the product's image, fetched under the worker's limits; only
        the header is decoded, to refuse what is not an image of an allowed format."""
        product = self.store.get_product(product_id)
        limits = self.limits.current()
        try:
            data = read_source(product.image_source, limits)
        except ImageLoadError as exc:
            raise ImageUnavailable(f"image of product {product_id!r}: {exc.reason}") from None
        except ValueError as exc:  # urllib/idna refuse some URLs before any limit applies
            raise ImageUnavailable(f"image of product {product_id!r}: invalid URL: {exc}") from None
        try:
            with Image.open(io.BytesIO(data)) as image:  # header only: we pass the bytes on
                fmt = image.format
        except Exception:
            raise ImageUnavailable(f"image of product {product_id!r} is not an image") from None
        if fmt not in self.limits.current().formats:
            raise ImageUnavailable(f"image of product {product_id!r} has unsupported format {fmt}")
        return data, Image.MIME.get(fmt, "application/octet-stream")
