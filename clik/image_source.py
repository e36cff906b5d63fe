"""Reading one image from wherever it lives, with limits, failing with a reason.

Sources: a local path (or ``file://`` URL), an ``http(s)://`` URL, raw bytes, a PIL image or a
numpy array. Every path that reads an image goes through ``load_image`` so the same limits hold
everywhere: a size cap on downloads, a pixel cap against decompression bombs, real image formats
only, and (for URLs) public addresses only unless allowed (clik.address_policy), a deadline per
image and the connection made to the checked address (clik.http_fetch). See docs/security.md.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from clik import http_fetch

ImageInput = str | Path | bytes | Image.Image | np.ndarray


class ImageLoadError(Exception):
    """An image that cannot be used; ``reason`` is short and meant for an operator to read."""

    def __init__(self, reason: str, transient: bool = False):
        super().__init__(reason)
        self.reason = reason
        # Worth retrying later (a timeout, a 5xx), as opposed to a broken or forbidden image.
        self.transient = transient


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout_s: float = 5.0  # each TCP connect
    read_timeout_s: float = 15.0  # each read of the socket
    # The whole fetch of one image (redirects included): a server dripping a byte a second
    # passes every read timeout and would hold a worker thread for hours otherwise.
    fetch_deadline_s: float = 30.0
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    formats: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
    # Local files: None allows any path (library use); a tuple restricts reads to those roots.
    file_roots: tuple[str, ...] | None = None
    allow_private_hosts: bool = False
    max_redirects: int = 3


DEFAULT_LIMITS = FetchLimits()


def content_hash(data: bytes) -> str:
    """The key of an image everywhere (feature cache, vector store): sha256 of its encoded bytes."""
    return hashlib.sha256(data).hexdigest()


def load_image(source: ImageInput, limits: FetchLimits = DEFAULT_LIMITS) -> Image.Image:
    """An RGB PIL image, or ImageLoadError saying why not."""
    if isinstance(source, Image.Image):
        return _check_pixels(source, limits).convert("RGB")
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, (bytes, bytearray)):
        return decode_image(bytes(source), limits)
    if isinstance(source, (str, Path)):
        return decode_image(read_source(source, limits), limits)
    raise ImageLoadError(f"unsupported image input type {type(source).__name__}")


def read_source(source: str | Path, limits: FetchLimits = DEFAULT_LIMITS) -> bytes:
    """The encoded bytes behind a path, ``file://`` or http(s) URL, under the same limits."""
    text = str(source)
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        return fetch_url(text, limits)
    if scheme == "file":
        text = urllib.parse.unquote(urllib.parse.urlsplit(text).path)
    elif scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ImageLoadError(f"unsupported URL scheme {scheme!r}")
    return read_file(text, limits)


def read_file(path: str | Path, limits: FetchLimits) -> bytes:
    resolved = Path(path).resolve()
    if limits.file_roots is not None and not any(
        resolved.is_relative_to(Path(root).resolve()) for root in limits.file_roots
    ):
        raise ImageLoadError(f"path outside the allowed roots: {path}")
    try:
        # O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; fstat on the
        # open descriptor then says what it is, with no window for a swap in between
        fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ImageLoadError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise ImageLoadError(f"is a directory: {path}") from None
    except PermissionError:
        raise ImageLoadError(f"permission denied: {path}") from None
    except OSError as exc:
        raise ImageLoadError(f"cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ImageLoadError(f"is a directory: {path}")
        if not stat.S_ISREG(info.st_mode):
            raise ImageLoadError(f"not a regular file: {path}")
        if info.st_size > limits.max_bytes:
            raise ImageLoadError(f"file too large: {info.st_size} bytes > {limits.max_bytes}")
        os.set_blocking(fd, True)
        data = f.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:  # grew since fstat
        raise ImageLoadError(f"file too large: more than {limits.max_bytes} bytes")
    return data


def fetch_url(url: str, limits: FetchLimits = DEFAULT_LIMITS) -> bytes:
    """The bytes at an http(s) URL under the limits (clik.http_fetch: deadline, pinned address)."""
    return http_fetch.fetch(url, limits)


def decode_image(
    data: bytes, limits: FetchLimits = DEFAULT_LIMITS, draft_size: tuple[int, int] | None = None
) -> Image.Image:
    """An RGB image from encoded bytes. ``draft_size``: a JPEG is scaled by libjpeg while it is
    decoded (1/2, 1/4, 1/8) to no less than this size, much cheaper than decoding it whole."""
    if not data:
        raise ImageLoadError("empty image data")
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in limits.formats:
            raise ImageLoadError(f"unsupported image format {image.format}")
        _check_pixels(image, limits)
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", draft_size)
        image.load()
        return image.convert("RGB")
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError("not an image (unrecognised data)") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"decompression bomb refused: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"corrupt image: {exc}") from None


def _check_pixels(image: Image.Image, limits: FetchLimits) -> Image.Image:
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageLoadError(f"too many pixels: {width}x{height} > {limits.max_pixels}")
    if width < 1 or height < 1:
        raise ImageLoadError("empty image")
    return image


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ImageLoadError(f"array must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all() and array.max() <= 1.0:
            array = (array * 255).round()
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(array[..., :3])


def describe(source: Any) -> str:
    """A short label of an input for error messages."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, np.ndarray):
        return f"array{tuple(source.shape)}"
    return type(source).__name__
