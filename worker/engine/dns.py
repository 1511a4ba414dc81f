"""Resolve a receiver's host once, every address checked by the SSRF guard (I/O: DNS).

Delivery rule kept here: the host is resolved once and every address checked
(`worker.policy.guard.check_address`); the transport then connects to a checked address
only, so a second DNS answer (rebinding) can never be used. One private address among
public ones refuses the host: it could be the one a connection ends up using.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

from worker.errors import BlockedDestination
from worker.policy.guard import IPNetwork, check_address, parse_ip_literal

__all__ = ["Resolver", "resolve"]

#: The shape of `socket.getaddrinfo` the guard needs; tests pass a fake.
Resolver = Callable[[str, int], Sequence[tuple[Any, Any, Any, Any, tuple[Any, ...]]]]


def resolve(
    host: str,
    port: int,
    allowed: Sequence[IPNetwork],
    resolver: Resolver = socket.getaddrinfo,
) -> list[str]:
    """Return the addresses of `host` to connect to, every one of them checked.

    Raises BlockedDestination when the host does not resolve or any address is refused:
    one private address among public ones could be the one a connection ends up using.
    """
    literal = parse_ip_literal(host)
    if literal is not None:
        reason = check_address(literal, allowed)
        if reason is not None:
            raise BlockedDestination(host, reason)
        # Connect to the canonical form, so libc never reinterprets the spelling.
        return [str(literal)]
    try:
        infos = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise BlockedDestination(host, "does not resolve") from exc
    addresses: list[str] = []
    for info in infos:
        address = info[4][0]
        if isinstance(address, str) and address not in addresses:
            addresses.append(address)
    if not addresses:
        raise BlockedDestination(host, "does not resolve")
    for address in addresses:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError as exc:
            raise BlockedDestination(host, f"unreadable address {address!r}") from exc
        reason = check_address(parsed, allowed)
        if reason is not None:
            raise BlockedDestination(host, reason)
    return addresses
