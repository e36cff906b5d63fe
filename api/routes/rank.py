"""POST /rank: rank images given in the request (URLs or uploads) for a topic, on the fly."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, File, Form, UploadFile
from pydantic import TypeAdapter, ValidationError

from api.auth import require_writer
from api.deps import ModelVersionParam, service, unprocessable
from api.schemas import HttpUrl, RankOut, RankRequest, Topic
from api.rank_sources import RankedSources
from api.service import ClikService

router = APIRouter(tags=["rank"])
_ERRORS = {401: {}, 403: {}, 409: {}, 503: {}}
_urls = TypeAdapter(list[HttpUrl])


def _out(ranked: RankedSources, sources: list[str]) -> RankOut:
    return RankOut(
        model_version=ranked.model_version,
        items=[
            {
                "index": it.index,
                "source": sources[it.index],
                "score": it.score,
                "rank": it.rank,
                "reused": it.reused,
                "appeal": it.appeal,
                "topic_fit": it.topic_fit,
                "off_topic": it.off_topic,
            }
            for it in ranked.items
        ],
        errors=[{"index": i, "source": sources[i], "reason": reason} for i, reason in sorted(ranked.errors.items())],
    )


@router.post("/rank", response_model=RankOut, dependencies=[Depends(require_writer)], responses=_ERRORS)
def rank(body: RankRequest, model_version: str | None = ModelVersionParam, svc: ClikService = Depends(service)):
    """Rank images at URLs for a topic. Images whose content the store already encoded for the
    active version are not encoded again. Needs a key: it spends CPU and fetches URLs."""
    limit = svc.settings.rank_max_images
    if len(body.image_urls) > limit:
        raise unprocessable(["body", "image_urls"], f"at most {limit} images")
    ranked = svc.sources.rank(body.topic.attrs(), body.image_urls, [], body.topk, model_version)
    return _out(ranked, body.image_urls)


@router.post("/rank/upload", response_model=RankOut, dependencies=[Depends(require_writer)], responses=_ERRORS)
def rank_upload(
    topic: str = Form(..., max_length=20_000, description="the topic as a JSON object"),
    images: list[UploadFile] = File(default_factory=list, description="image files"),
    image_urls: list[str] = Form(default_factory=list, description="image URLs as well"),
    topk: int | None = Form(None, ge=1),
    model_version: str | None = ModelVersionParam,
    svc: ClikService = Depends(service),
):
    """The multipart form of POST /rank: uploaded files (and optionally URLs), ranked together;
    indices count URLs first, then files."""
    try:
        parsed = Topic.model_validate(json.loads(topic))
    except (json.JSONDecodeError, ValidationError, TypeError) as exc:
        raise unprocessable(["body", "topic"], f"topic must be a JSON object of topic attributes: {exc}")
    try:
        urls = _urls.validate_python(image_urls)
    except ValidationError as exc:
        raise unprocessable(["body", "image_urls"], str(exc))
    limit = svc.settings.rank_max_images
    if not images and not urls:
        raise unprocessable(["body", "images"], "give at least one image file or URL")
    if len(images) + len(urls) > limit:
        raise unprocessable(["body", "images"], f"at most {limit} images")
    uploads = []
    for n, upload in enumerate(images):
        max_bytes = svc.fetch_limits.current().max_bytes
        data = upload.file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise unprocessable(["body", "images", n], f"file larger than {max_bytes} bytes")
        uploads.append(data)
    ranked = svc.sources.rank(parsed.attrs(), urls, uploads, topk, model_version)
    return _out(ranked, urls + [u.filename or f"upload-{n}" for n, u in enumerate(images)])
