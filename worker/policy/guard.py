"""Refuse destinations that are not public (SSRF guard): pure checks of one address.

Delivery rule kept here: by default only public addresses are reached. IPv6 forms that carry
an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are judged by the address they
carry. `WEBHOOKS_ALLOWED_NETWORKS` opens chosen ranges for development and tests. Name
resolution, the I/O half of the guard, is `worker.delivery.dns.resolve`, which checks every
address a host resolves to with `check_address`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

__all__ = [
    "IPAddress",
    "IPNetwork",
    "check_address",
    "is_public",
    "parse_ip_literal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: A network of WEBHOOKS_ALLOWED_NETWORKS (the settings parse them into this type).
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# IANA's IPv4 special-purpose registry, plus multicast: none of it is a webhook receiver.
# Written out rather than taken from ipaddress' is_private/is_global, whose answers changed
# between Python patch releases.
_BLOCKED_V4: tuple[tuple[_V4, str], ...] = (
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "shared (CGNAT)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "reserved"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "reserved"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

_COMPATIBLE = _V6("::/96")
_NAT64 = _V6("64:ff9b::/96")
_SIX_TO_FOUR = _V6("2002::/16")
_TEREDO = _V6("2001::/32")
_GLOBAL_UNICAST = _V6("2000::/3")

# Checked after the forms that embed IPv4. Everything outside 2000::/3 is refused too.
_BLOCKED_V6: tuple[tuple[_V6, str], ...] = (
    # A local-use NAT64 prefix may embed IPv4 at any of several offsets (RFC 6052), so the
    # embedded address cannot be trusted: refuse the whole prefix.
    (_V6("64:ff9b:1::/48"), "local NAT64"),
    (_V6("100::/64"), "discard-only"),
    (_V6("2001::/23"), "reserved"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("5f00::/16"), "reserved"),
    (_V6("fc00::/7"), "unique local"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local"),
    (_V6("ff00::/8"), "multicast"),
)

_INET_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


def is_public(addr: IPAddress) -> bool:
    """Return whether an address is public, judging IPv6 forms by the IPv4 they embed."""
    return _refusal(addr) is None


def check_address(addr: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """Return None if `addr` may be reached, else a short reason it may not."""
    if _in_any(addr, allowed):
        return None
    embedded = _embedded_ipv4(addr)
    if embedded is not None and _in_any(embedded, allowed):
        return None
    return _refusal(addr)


def parse_ip_literal(host: str) -> IPAddress | None:
    """Return the address a host names literally, or None for a host name.

    Besides the usual forms this reads what libc's inet_aton reads: 1 to 4 parts, each
    decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes, so that
    ``2130706433``, ``0177.0.0.1`` and ``0x7f.1`` are all 127.0.0.1.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    return _parse_inet_aton(text)


def _refusal(addr: IPAddress) -> str | None:
    if isinstance(addr, ipaddress.IPv4Address):
        label = _blocked_v4_label(addr)
        return None if label is None else f"{label} address {addr}"
    embedded = _embedded_ipv4(addr)
    if embedded is not None:
        label = _blocked_v4_label(embedded)
        if label is None and addr in _TEREDO:
            # Teredo reaches the client through its server: both must be public.
            teredo = addr.teredo
            assert teredo is not None
            label = _blocked_v4_label(teredo[0])
        return None if label is None else f"{label} address {addr} (embeds {embedded})"
    # Compared as integers: a zone id (``::1%lo``) makes equal addresses compare unequal.
    if int(addr) == 0:
        return f"unspecified address {addr}"
    if int(addr) == 1:
        return f"loopback address {addr}"
    for network, label in _BLOCKED_V6:
        if addr in network:
            return f"{label} address {addr}"
    if addr not in _GLOBAL_UNICAST:
        return f"reserved address {addr}"
    return None


def _blocked_v4_label(addr: ipaddress.IPv4Address) -> str | None:
    for network, label in _BLOCKED_V4:
        if addr in network:
            return label
    return None


def _embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address an IPv6 form carries, or None when it carries none."""
    if isinstance(addr, ipaddress.IPv4Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _COMPATIBLE and int(addr) > 1:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    return None


def _in_any(addr: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(addr.version == net.version and addr in net for net in networks)


def _parse_inet_aton(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        if not _INET_ATON_PART.fullmatch(part):
            return None
        if part[:2] in ("0x", "0X"):
            values.append(int(part[2:] or "0", 16))
        elif part.startswith("0"):
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    number = last
    for index, value in enumerate(leading):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)
