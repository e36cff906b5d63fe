"""Products: registered with their image; the worker encodes them (202 = queued)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Response

from api.auth import require_reader, require_writer
from api.deps import service, unprocessable
from api.image_proxy import ProxyBusy
from api.schemas import ID_ALPHABET, ID_PATTERN, BatchAccepted, ProductAccepted, ProductBatch, ProductIn, ProductOut
from api.service import ClikService

router = APIRouter(tags=["products"])
ProductId = Path(min_length=1, max_length=512, pattern=ID_PATTERN, description=ID_ALPHABET)


@router.put(
    "/products/{product_id}",
    status_code=202,
    response_model=ProductAccepted,
    dependencies=[Depends(require_writer)],
    responses={401: {}, 403: {}, 503: {"description": "store or queue unavailable"}},
)
def put_product(body: ProductIn, product_id: str = ProductId, svc: ClikService = Depends(service)):
    """Create or update a product; queued for encoding unless its image is already encoded."""
    [(product, queued)] = svc.products.put([(product_id, body.image_url, body.attrs)])
    return ProductAccepted(product_id=product_id, status=product.status.value, queued=queued)


@router.put(
    "/products",
    status_code=202,
    response_model=BatchAccepted,
    dependencies=[Depends(require_writer)],
    responses={401: {}, 403: {}, 503: {}},
)
def put_products(body: ProductBatch, svc: ClikService = Depends(service)):
    """Batch form of PUT /products/{id} (the last entry wins for a repeated id)."""
    limit = svc.settings.batch_max_products
    if len(body.products) > limit:
        raise unprocessable(["body", "products"], f"at most {limit} products per batch")
    latest = {p.product_id: p for p in body.products}
    results = svc.products.put([(pid, p.image_url, p.attrs) for pid, p in latest.items()])
    return BatchAccepted(accepted=len(results), queued=[p.product_id for p, q in results if q])


@router.get(
    "/products/{product_id}",
    response_model=ProductOut,
    dependencies=[Depends(require_reader)],
    responses={404: {}, 503: {}},
)
def get_product(product_id: str = ProductId, svc: ClikService = Depends(service)):
    p = svc.store.get_product(product_id)
    return ProductOut(
        product_id=p.product_id,
        image_url=p.image_source,
        status=p.status.value,
        image_hash=p.image_hash,
        error=p.error,
        attrs=p.attrs,
    )


@router.get(
    "/products/{product_id}/image",
    dependencies=[Depends(require_reader)],
    response_class=Response,
    responses={
        200: {"content": {"image/*": {}}, "description": "the image bytes"},
        404: {},
        422: {"description": "the image cannot be fetched or is not an image"},
        503: {"description": "store down, or too many image fetches at once (Retry-After)"},
    },
)
async def get_product_image(product_id: str = ProductId, svc: ClikService = Depends(service)):
    """The product's image, fetched under the same limits as the worker's, in the image
    proxy's own few threads (a slow origin cannot take the request pool)."""
    try:
        data, media_type = await svc.image_proxy.run(svc.products.image, product_id)
    except ProxyBusy:
        raise HTTPException(
            503, "image proxy busy: too many image fetches at once, retry shortly", headers={"Retry-After": "1"}
        ) from None
    return Response(data, media_type=media_type, headers={"Cache-Control": "max-age=60"})


@router.delete(
    "/products/{product_id}",
    status_code=204,
    dependencies=[Depends(require_writer)],
    responses={401: {}, 403: {}, 404: {}, 503: {}},
)
def delete_product(product_id: str = ProductId, svc: ClikService = Depends(service)):
    svc.store.delete_product(product_id)
    return Response(status_code=204)
