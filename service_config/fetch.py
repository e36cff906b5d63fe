"""The image-fetching limits as typed settings fields, shared by every process that reads images
(worker, API): one place for their names, defaults and the conversion to ``FetchLimits``."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from clik.image_source import FetchLimits


class FetchSettings(BaseModel):
    """Mixed into pydantic-settings classes: ``CLIK_FILE_ROOTS``, ``CLIK_MAX_BYTES``, ..."""

    file_roots: list[str] = Field(default_factory=list)  # local paths / file:// only below these; [] = none
    allow_private_hosts: bool = False  # allow URLs resolving to non-public addresses (tests, dev)
    connect_timeout_s: float = Field(5.0, gt=0)  # each connect
    read_timeout_s: float = Field(15.0, gt=0)  # each read
    fetch_deadline_s: float = Field(30.0, gt=0)  # the whole fetch of one image, redirects included
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000

    def fetch_limits(self, extra_roots: Iterable[str] = ()) -> FetchLimits:
        """The limits; ``extra_roots``: folders a store recorded for its catalogue
        (indexer.store_settings) on top of CLIK_FILE_ROOTS."""
        roots = list(dict.fromkeys([*self.file_roots, *extra_roots]))
        return FetchLimits(
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            fetch_deadline_s=self.fetch_deadline_s,
            max_bytes=self.max_bytes,
            max_pixels=self.max_pixels,
            file_roots=tuple(roots),
            allow_private_hosts=self.allow_private_hosts,
        )
