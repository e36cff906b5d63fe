"""One image over HTTP(S) under a deadline, connected to the address that was checked.

Why not urllib's opener: its one ``timeout`` applies to the connect and to each read, so a
server sending a byte a second never times out (a worker was held 100 s by one image, and
would be held for hours at the size cap); and it resolves the host again when it connects,
so the address the SSRF check saw need not be the one connected to (DNS rebinding).

Here, per image:
* the host is resolved once (``clik.address_policy.resolve``) and the socket connected to one
  of those addresses; the ``Host`` header and TLS SNI / certificate check still use the name;
* ``connect_timeout_s`` bounds each connect, ``read_timeout_s`` each read, and
  ``fetch_deadline_s`` the whole fetch (redirects included): a timer shuts the socket down at
  the deadline, which ends any read in progress (a drip of headers as well as of the body);
* a body shorter than its ``Content-Length`` is a transient error (the next try may get it
  whole), not a corrupt image;
* every redirect is checked like the first URL, at most ``max_redirects`` of them.

An HTTP proxy from the environment (``http_proxy``/``https_proxy``, ``no_proxy``) is used as
urllib would: the proxy, chosen by the operator, makes the connection (CONNECT for https).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING

from clik.address_policy import RefusedAddress, Unresolvable, resolve

if TYPE_CHECKING:
    from clik.image_source import FetchLimits

_REDIRECTS = {301, 302, 303, 307, 308}
_SAFE_URL_CHARS = "".join(chr(c) for c in range(33, 127))  # printable ASCII stays as it is
USER_AGENT = "clik-image-fetch/0.2"


def _error(reason: str, transient: bool = False) -> Exception:
    from clik.image_source import ImageLoadError  # the one error type of image reading

    return ImageLoadError(reason, transient=transient)


def fetch(url: str, limits: "FetchLimits") -> bytes:
    deadline = time.monotonic() + limits.fetch_deadline_s
    for _ in range(limits.max_redirects + 1):
        body, location = _get(url, limits, deadline)
        if location is None:
            return body
        url = urllib.parse.urljoin(url, location)
    raise _error("too many redirects")


class _Target:
    """A checked, split URL: what to connect to and what to send."""

    def __init__(self, url: str, limits: "FetchLimits") -> None:
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port  # ValueError when out of range or not a number
        except ValueError as exc:
            raise _error(f"invalid URL {url!r}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _error(f"refused URL {url!r}")
        try:
            self.host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise _error(f"invalid host in URL {url!r}: {exc}") from None
        self.url, self.https = url, parts.scheme == "https"
        self.port = port or (443 if self.https else 80)
        bracketed = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = bracketed + (f":{port}" if port else "")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.path = urllib.parse.quote(path, safe=_SAFE_URL_CHARS)
        self.proxy = _proxy_for(parts.scheme, self.host)
        self.addresses: list[str] = []
        if self.proxy is not None and limits.allow_private_hosts:
            return  # nothing to check, and the proxy resolves the name (we may not be able to)
        try:
            # checked even when proxied: the proxy would fetch whatever we ask it to
            self.addresses = resolve(self.host, self.port, allow_private=limits.allow_private_hosts)
        except RefusedAddress as exc:
            raise _error(str(exc)) from None
        except Unresolvable as exc:
            raise _error(str(exc), transient=True) from None
        except UnicodeError as exc:
            raise _error(f"invalid host in URL {url!r}: {exc}") from None


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return parts.hostname or "", parts.port or 80


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the given addresses only; Host header from the name."""

    def __init__(self, target: _Target, connect_timeout: float, read_timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=connect_timeout)
        self._addresses, self._read_timeout = target.addresses, read_timeout

    def connect(self) -> None:
        self.sock = _connect_any(self._addresses, self.port, self.timeout)
        self.sock.settimeout(self._read_timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """As _PinnedHTTP, then TLS with SNI and certificate check against the name."""

    def __init__(self, target: _Target, connect_timeout: float, read_timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=connect_timeout, context=ssl.create_default_context())
        self._addresses, self._read_timeout = target.addresses, read_timeout

    def connect(self) -> None:
        sock = _connect_any(self._addresses, self.port, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        self.sock.settimeout(self._read_timeout)


def _connect_any(addresses: list[str], port: int, timeout: float) -> socket.socket:
    last: OSError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection((address, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            last = exc
    raise last or OSError("no address to connect to")


def _connection(target: _Target, limits: "FetchLimits", remaining: float) -> http.client.HTTPConnection:
    connect_timeout = min(limits.connect_timeout_s, remaining)
    if target.proxy is None:
        cls = _PinnedHTTPS if target.https else _PinnedHTTP
        return cls(target, connect_timeout, limits.read_timeout_s)
    host, port = target.proxy
    if target.https:
        conn = http.client.HTTPSConnection(host, port, timeout=connect_timeout, context=ssl.create_default_context())
        conn.set_tunnel(target.host, target.port)
        return conn
    return http.client.HTTPConnection(host, port, timeout=connect_timeout)


def _get(url: str, limits: "FetchLimits", deadline: float) -> tuple[bytes, str | None]:
    """(body, None) or (b"", redirect location)."""
    target = _Target(url, limits)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _error(f"fetch deadline of {limits.fetch_deadline_s:g}s exceeded for {url}", transient=True)
    conn = _connection(target, limits, remaining)
    expired = threading.Event()

    def expire() -> None:  # unblocks a read in progress; the loop below then stops
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(remaining, expire)
    timer.daemon = True
    timer.start()
    try:
        request_path = (
            target.path
            if target.proxy is None or target.https
            else f"{'https' if target.https else 'http'}://{target.host_header}{target.path}"
        )
        conn.request(
            "GET", request_path, headers={"Host": target.host_header, "User-Agent": USER_AGENT, "Accept": "image/*"}
        )
        response = conn.getresponse()
        if response.status in _REDIRECTS:
            location = response.getheader("Location")
            if location:
                return b"", location
        if response.status >= 400:
            raise _error(
                f"HTTP {response.status} from {url}", transient=response.status >= 500 or response.status == 429
            )
        return _read_body(response, url, limits, expired), None
    except ssl.SSLCertVerificationError as exc:
        raise _error(f"TLS certificate refused for {url}: {exc.verify_message or exc}") from None
    except http.client.IncompleteRead as exc:
        raise _error(
            f"truncated body from {url}: got {len(exc.partial)} bytes, then the connection closed", transient=True
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise _error(f"fetch deadline of {limits.fetch_deadline_s:g}s exceeded for {url}", transient=True) from None
        if isinstance(exc, (TimeoutError, socket.timeout)):
            raise _error(f"cannot fetch {url}: timed out", transient=True) from None
        if isinstance(exc, (OSError, http.client.RemoteDisconnected)):
            raise _error(
                f"cannot fetch {url}: {exc.strerror or exc}"
                if isinstance(exc, OSError)
                else f"cannot fetch {url}: {exc}",
                transient=True,
            ) from None
        raise _error(f"bad HTTP response from {url}: {type(exc).__name__}") from None
    except ValueError as exc:  # http.client.InvalidURL and the like: a bad URL, for good
        raise _error(f"invalid URL {url!r}: {exc}") from None
    finally:
        timer.cancel()
        conn.close()


def _read_body(response: http.client.HTTPResponse, url: str, limits: "FetchLimits", expired: threading.Event) -> bytes:
    declared = response.getheader("Content-Length")
    length = int(declared) if declared and declared.strip().isdigit() else None
    if length is not None and length > limits.max_bytes:
        raise _error(f"image too large: {length} bytes > {limits.max_bytes}")
    parts: list[bytes] = []
    received = 0
    while True:
        chunk = response.read(min(65536, limits.max_bytes + 1 - received))
        if expired.is_set():
            raise _error(f"fetch deadline of {limits.fetch_deadline_s:g}s exceeded for {url}", transient=True)
        if not chunk:
            break
        parts.append(chunk)
        received += len(chunk)
        if received > limits.max_bytes:
            raise _error(f"image too large: more than {limits.max_bytes} bytes")
    if length is not None and received < length:
        raise _error(f"truncated body from {url}: got {received} of {length} bytes", transient=True)
    return b"".join(parts)
