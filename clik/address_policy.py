"""Which network addresses a server may fetch images from: public (globally routable) ones only.

Why a positive rule (``is_global``) and not a list of bad ranges: a list misses ranges, and
did (100.64.0.0/10, where a cloud metadata service answers on 100.100.100.200; 6to4
2002::/16). IPv6 forms that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, NAT64
``64:ff9b::/96``) are judged by that IPv4 address; 6to4 and the local NAT64 prefix reach
arbitrary IPv4 hosts through a relay and are refused outright. ``ipaddress`` differs a little
between Python versions, so the ranges it has called global in some version while they are
not are listed as well.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NOT_GLOBAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "ff00::/8",
        "fec0::/10",
        "2002::/16",
        "64:ff9b:1::/48",
        "2001::/23",
        "2001:db8::/32",
        "3fff::/20",
        "5f00::/16",
        "100::/64",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(addr: IPAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return is_public(addr.ipv4_mapped)
        if addr in _NAT64:
            return is_public(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
        if addr.scope_id:
            return False
    if any(addr.version == net.version and addr in net for net in _NOT_GLOBAL):
        return False
    return addr.is_global and not addr.is_multicast


class RefusedAddress(Exception):
    """A host that resolves to a non-public address; ``str`` names the host, not the address
    (an internal name's address is no business of the caller's), except for a literal."""


class Unresolvable(Exception):
    pass


def resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses to connect to for ``host`` (all checked unless ``allow_private``).
    One non-public answer refuses the host: which answer a later lookup gives is not ours
    to choose, so we connect only to these, never to a second lookup's."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        if isinstance(exc, UnicodeError):
            raise
        raise Unresolvable(f"cannot resolve host {host!r}: {exc.strerror or exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        for text in addresses:
            if not is_public(ipaddress.ip_address(text.split("%")[0])):
                if literal is not None:
                    raise RefusedAddress(f"refused address {literal}: not a public address")
                raise RefusedAddress(f"refused address for host {host!r}: it resolves to a non-public address")
    return addresses
