"""Resolve a receiver's host once, every address checked by the SSRF guard (I/O: DNS).

Delivery rule kept here: the host is resolved once and every address checked
(`worker.policy.destination.check_resolved`); the transport then connects to a checked
address only, so a second DNS answer (rebinding) can never be used. One private address
among public ones refuses the host: it could be the one a connection ends up using.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from worker.errors import BlockedDestination
from worker.policy.destination import Resolver, check_resolved
from worker.policy.guard import IPNetwork, check_address, parse_ip_literal

__all__ = ["Resolver", "resolve"]


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
    return check_resolved(host, infos, allowed)
