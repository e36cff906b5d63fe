"""Reading one image from wherever it lives, with limits, failing with a reason.

Sources: a local path (or ``file://`` URL), an ``http(s)://`` URL, raw bytes, a PIL image or a
numpy array. Every path that reads an image goes through ``load_image`` so the same limits hold
everywhere: a size cap on downloads, a pixel cap against decompression bombs, real image formats
only, and (for URLs) no loopback / private / link-local / metadata addresses unless allowed.
"""
from __future__ import annotations

import hashlib
import io
import ipaddress
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageInput = Union[str, Path, bytes, Image.Image, np.ndarray]


class ImageLoadError(Exception):
    """An image that cannot be used; ``reason`` is short and meant for an operator to read."""

    def __init__(self, reason: str, transient: bool = False):
        super().__init__(reason)
        self.reason = reason
        # Worth retrying later (a timeout, a 5xx), as opposed to a broken or forbidden image.
        self.transient = transient


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
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
        size = resolved.stat().st_size
        if size > limits.max_bytes:
            raise ImageLoadError(f"file too large: {size} bytes > {limits.max_bytes}")
        return resolved.read_bytes()
    except FileNotFoundError:
        raise ImageLoadError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise ImageLoadError(f"is a directory: {path}") from None
    except PermissionError:
        raise ImageLoadError(f"permission denied: {path}") from None


def check_host(host: str, port: int, limits: FetchLimits) -> None:
    """Refuse hosts that resolve to addresses a server must not be tricked into calling."""
    if limits.allow_private_hosts:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ImageLoadError(f"cannot resolve host {host!r}: {exc}", transient=True) from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if (
            addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
            or addr.is_reserved or addr.is_unspecified
        ):
            raise ImageLoadError(f"refused address {addr} for host {host!r}")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, limits: FetchLimits):
        self.limits = limits
        self.count = 0

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.count += 1
        if self.count > self.limits.max_redirects:
            raise ImageLoadError("too many redirects")
        _check_url(newurl, self.limits)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _check_url(url: str, limits: FetchLimits) -> None:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError when out of range or not a number
    except ValueError as exc:
        raise ImageLoadError(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageLoadError(f"refused URL {url!r}")
    try:
        check_host(parts.hostname, port or (443 if parts.scheme == "https" else 80), limits)
    except UnicodeError as exc:  # a host name IDNA cannot encode
        raise ImageLoadError(f"invalid host in URL {url!r}: {exc}") from None


def fetch_url(url: str, limits: FetchLimits = DEFAULT_LIMITS) -> bytes:
    _check_url(url, limits)
    opener = urllib.request.build_opener(_CheckedRedirects(limits))
    request = urllib.request.Request(url, headers={"User-Agent": "clik-image-fetch/0.1"})
    try:
        # urllib has one timeout for connect and each read; the connect limit is the stricter.
        with opener.open(request, timeout=limits.connect_timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise ImageLoadError(f"image too large: {declared} bytes > {limits.max_bytes}")
            body = response.read(limits.max_bytes + 1)
    except ImageLoadError:
        raise
    except urllib.error.HTTPError as exc:
        raise ImageLoadError(f"HTTP {exc.code} from {url}", transient=exc.code >= 500 or exc.code == 429) from None
    except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ImageLoadError(f"cannot fetch {url}: {reason}", transient=True) from None
    except (ValueError, UnicodeError) as exc:  # http.client.InvalidURL and the like: a bad URL, for good
        raise ImageLoadError(f"invalid URL {url!r}: {exc}") from None
    if len(body) > limits.max_bytes:
        raise ImageLoadError(f"image too large: more than {limits.max_bytes} bytes")
    return body


def decode_image(data: bytes, limits: FetchLimits = DEFAULT_LIMITS) -> Image.Image:
    if not data:
        raise ImageLoadError("empty image data")
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in limits.formats:
            raise ImageLoadError(f"unsupported image format {image.format}")
        _check_pixels(image, limits)
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
