"""Where an endpoint's URL leads: the host the sender connects to, judged by one rule.

Delivery rule kept here: the checks when an endpoint's URL is set (`worker.ops.validation`)
and the sender (`worker.delivery.http`, `worker.delivery.dns`) read a URL through `target`,
which asks yarl (the URL library of the sender's HTTP client, aiohttp) for its host. So
every spelling of a host is judged as the host the connection goes to: IDNA/UTS-46 with
NFKC (``①②⑦.0.0.1``, ``１２７.0.0.1`` and ``ｌｏｃａｌｈｏｓｔ`` are ``127.0.0.1`` and
``localhost``), the ideographic and full-width dots (U+3002, U+FF0E, U+FF61) as dots,
IPv6 compressed. What the sender blocks without asking DNS, `refusal` names; the names it
resolves are judged, every address, by `check_resolved`. Pure: resolving is the caller's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yarl

from worker.errors import BlockedDestination
from worker.policy.guard import IPAddress, IPNetwork, check_address, parse_ip_literal

__all__ = [
    "NOT_AN_ADDRESS",
    "Resolver",
    "Target",
    "check_resolved",
    "is_local_name",
    "refusal",
    "taken_for_an_address",
    "target",
]

#: The shape of `socket.getaddrinfo` the guard needs; tests pass a fake.
Resolver = Callable[[str, int], Sequence[tuple[Any, Any, Any, Any, tuple[Any, ...]]]]

#: Why a host the HTTP client would connect to unresolved is refused when it is no address.
NOT_AN_ADDRESS = "not a valid IP address"


@dataclass(frozen=True)
class Target:
    """The host a URL's connection goes to, as the sender spells it, and its port."""

    #: yarl's encoded host: lower case, IDNA (punycode) for names, IPv6 without brackets.
    host: str
    #: The host as a person reads it: names decoded from punycode, as yarl shows them.
    shown: str
    #: The port connected to: the URL's, else its scheme's (80, 443).
    port: int
    #: The address the host names literally (in any form libc reads), None for a name.
    address: IPAddress | None


def target(url: str) -> Target:
    """Return where the sender takes ``url``; raise ValueError if it cannot parse it.

    The host is yarl's, exactly as aiohttp connects to it: a host name that differs from
    what the user typed (Unicode digits, full-width dots, upper case) is judged as it will
    be used, never as it was written.
    """
    try:
        parsed = yarl.URL(url)
        host = parsed.raw_host
    except (ValueError, UnicodeError) as exc:
        raise ValueError(str(exc) or "malformed URL") from exc
    if not host:
        raise ValueError("no host")
    return Target(host, parsed.host or host, parsed.port or 0, parse_ip_literal(host))


def refusal(where: Target, allowed: Sequence[IPNetwork]) -> str | None:
    """Return why the sender refuses ``where`` without resolving it, else None.

    An address outside the public ones and ``allowed`` is refused with the guard's reason.
    A host the HTTP client connects to as it is, unresolved (`taken_for_an_address`), is
    refused unless it is a canonical address: the socket layer might read any other
    spelling as some address, and aiohttp itself refuses the legacy IPv4 forms. None means
    the host may be reached, or is a name whose addresses must be checked
    (`check_resolved`).
    """
    if where.address is not None:
        reason = check_address(where.address, allowed)
        if reason is not None:
            return reason
    if taken_for_an_address(where.host) and not _canonical(where.host):
        return NOT_AN_ADDRESS
    return None


def taken_for_an_address(host: str) -> bool:
    """Return whether aiohttp connects to ``host`` as it is, without asking the resolver."""
    # aiohttp's own test (helpers.is_ip_address): a colon, or nothing but digits and dots.
    return ":" in host or host.replace(".", "").isdigit()


def is_local_name(host: str) -> bool:
    """Return whether ``host`` names this machine by name (``localhost``, ``*.localhost``)."""
    name = host.rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def check_resolved(
    host: str,
    infos: Sequence[tuple[Any, Any, Any, Any, tuple[Any, ...]]],
    allowed: Sequence[IPNetwork],
) -> list[str]:
    """Return the addresses a resolver answered for ``host``, every one of them checked.

    Raises BlockedDestination when there is none or any address is refused: one private
    address among public ones could be the one a connection ends up using.
    """
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


def _canonical(host: str) -> bool:
    """Return whether ``host`` is an address written as the socket layer must read it."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    try:
        return str(ipaddress.IPv4Address(host)) == host
    except ValueError:
        return False
