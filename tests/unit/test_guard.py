"""Specify the SSRF guard: which addresses are public, literals, and checked resolution."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

import pytest

from worker.delivery.dns import resolve
from worker.errors import BlockedDestination
from worker.policy.guard import IPAddress, check_address, is_public, parse_ip_literal
from worker.settings import IPNetwork, parse_networks

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",  # mapped
    "::8.8.8.8",  # compatible
    "64:ff9b::8.8.8.8",  # NAT64, well-known prefix
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    # Teredo: server 65.54.227.120, client 8.8.8.8 (stored inverted).
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
]

NOT_PUBLIC = [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.255", "shared (CGNAT)"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("169.254.0.1", "link-local"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.1", "documentation"),
    ("192.88.99.1", "reserved"),
    ("192.168.1.1", "private"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.1.2.3", "private"),
    ("::127.0.0.1", "loopback"),
    ("::10.0.0.1", "private"),
    ("64:ff9b::127.0.0.1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local"),
    ("64:ff9b:1::808:808", "local NAT64"),
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", "link-local"),
    # Teredo with a private client (10.0.0.1, inverted) or a private server.
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),
    ("2001:0:a00:1:8000:63bf:f7f7:f7f7", "private"),
    ("100::1", "discard-only"),
    ("2001:2::1", "reserved"),  # benchmarking, inside the IETF block
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("5f00::1", "reserved"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fd00:ec2::254", "unique local"),  # AWS IPv6 metadata
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("::2:1", "unspecified"),  # compatible form of 0.2.0.1
    ("1::1", "reserved"),
    ("4000::1", "reserved"),
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_public(address: str) -> None:
    addr = ipaddress.ip_address(address)
    assert is_public(addr)
    assert check_address(addr, []) is None


@pytest.mark.parametrize(("address", "label"), NOT_PUBLIC)
def test_non_public_addresses_are_refused_with_a_reason(address: str, label: str) -> None:
    addr = ipaddress.ip_address(address)
    assert not is_public(addr)
    reason = check_address(addr, [])
    assert reason is not None
    assert reason.startswith(f"{label} address {addr}")


def test_the_reason_names_an_embedded_address() -> None:
    reason = check_address(ipaddress.ip_address("::ffff:10.0.0.1"), [])
    assert reason == "private address ::ffff:a00:1 (embeds 10.0.0.1)"


@pytest.mark.parametrize(
    ("address", "allowed", "expected_ok"),
    [
        ("10.0.0.1", "10.0.0.0/8", True),
        ("10.0.0.1", "10.1.0.0/16", False),
        ("127.0.0.1", "127.0.0.0/8", True),
        ("::ffff:127.0.0.1", "127.0.0.0/8", True),  # mapped form of an allowed address
        ("64:ff9b::a00:1", "10.0.0.0/8", True),
        ("2002:a00:1::1", "10.0.0.0/8", True),
        ("::1", "127.0.0.0/8", False),  # a different address, not a mapped form
        ("::1", "::1/128", True),
        ("fd00::5", "fd00::/8", True),
        ("fe80::1%eth0", "fe80::/10", True),
        ("192.168.1.1", "10.0.0.0/8,172.16.0.0/12", False),
        ("192.168.1.1", "10.0.0.0/8,192.168.0.0/16", True),
        ("8.8.8.8", "", True),  # public needs no allowance
    ],
)
def test_allowed_networks_open_private_ranges(
    address: str, allowed: str, expected_ok: bool
) -> None:
    reason = check_address(ipaddress.ip_address(address), parse_networks(allowed))
    assert (reason is None) is expected_ok


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("8.8.8.8", "8.8.8.8"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        # inet_aton spellings
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7F.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("10.0x10000", "10.1.0.0"),
        ("127.000.000.001", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0xffffffff", "255.255.255.255"),
        ("169.254.43518", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        # host names
        ("example.com", None),
        ("localhost", None),
        ("0x7f.example", None),
        ("1.2.3.4.5", None),
        ("09.0.0.1", None),  # not octal
        ("256.0.0.1", None),
        ("1.2.3.256", None),
        ("4294967296", None),
        ("1.16777216", None),
        ("1..2", None),
        ("", None),
        ("-1", None),
    ],
)
def test_parse_ip_literal(host: str, expected: str | None) -> None:
    parsed = parse_ip_literal(host)
    assert (None if parsed is None else str(parsed)) == expected


class FakeResolver:
    """Answer getaddrinfo-shaped lookups from a table and count them."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    def __call__(
        self, host: str, port: int
    ) -> Sequence[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answers: list[tuple[Any, Any, Any, Any, tuple[Any, ...]]] = []
        for address in self.table[host]:
            if ":" in address:
                answers.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                answers.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return answers


DNS = {
    "public.test": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "dupes.test": ["93.184.216.34", "93.184.216.34"],
    "private.test": ["10.0.0.7"],
    "mixed.test": ["93.184.216.34", "192.168.0.10", "1.1.1.1"],
    "metadata.test": ["169.254.169.254"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "empty.test": [],
}


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("public.test", (), ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]),
        ("dupes.test", (), ["93.184.216.34"]),
        ("private.test", parse_networks("10.0.0.0/8"), ["10.0.0.7"]),
        (
            "mixed.test",
            parse_networks("192.168.0.0/16"),
            ["93.184.216.34", "192.168.0.10", "1.1.1.1"],
        ),
        ("8.8.8.8", (), ["8.8.8.8"]),
        ("2130706433", parse_networks("127.0.0.0/8"), ["127.0.0.1"]),
        ("[::1]", parse_networks("::1/128"), ["::1"]),
    ],
)
def test_resolve_returns_every_checked_address(
    host: str, allowed: Sequence[IPNetwork], expected: list[str]
) -> None:
    assert resolve(host, 443, allowed, FakeResolver(DNS)) == expected


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("private.test", "private address 10.0.0.7"),
        # One private address among public ones is enough to refuse the name.
        ("mixed.test", "private address 192.168.0.10"),
        ("metadata.test", "link-local address 169.254.169.254"),
        ("mapped.test", "loopback address ::ffff:7f00:1 (embeds 127.0.0.1)"),
        ("missing.test", "does not resolve"),
        ("empty.test", "does not resolve"),
        ("127.0.0.1", "loopback address 127.0.0.1"),
        ("2130706433", "loopback address 127.0.0.1"),
        ("0177.0.0.1", "loopback address 127.0.0.1"),
        ("0x7f.1", "loopback address 127.0.0.1"),
        ("0251.0376.0251.0376", "link-local address 169.254.169.254"),
        ("[::1]", "loopback address ::1"),
        ("[fd00:ec2::254]", "unique local address fd00:ec2::254"),
    ],
)
def test_resolve_refuses_blocked_hosts(host: str, reason: str) -> None:
    with pytest.raises(BlockedDestination) as caught:
        resolve(host, 443, (), FakeResolver(DNS))
    assert caught.value.host == host
    assert caught.value.reason == reason


def test_literals_are_never_sent_to_the_resolver() -> None:
    resolver = FakeResolver(DNS)
    with pytest.raises(BlockedDestination):
        resolve("0x7f.1", 80, (), resolver)
    resolve("8.8.8.8", 80, (), resolver)
    assert resolver.calls == []


def test_a_name_is_resolved_exactly_once() -> None:
    resolver = FakeResolver(DNS)
    resolve("public.test", 443, (), resolver)
    assert resolver.calls == ["public.test"]


def test_a_resolver_that_raises_unicode_errors_means_does_not_resolve() -> None:
    def broken(host: str, port: int) -> Sequence[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        raise UnicodeError("label too long")

    with pytest.raises(BlockedDestination, match="does not resolve"):
        resolve("x" * 300 + ".test", 443, (), broken)


def test_resolve_uses_getaddrinfo_by_default() -> None:
    # "localhost" resolves without a network; it is loopback, so it is refused by default.
    with pytest.raises(BlockedDestination, match="loopback"):
        resolve("localhost", 80, ())
    assert resolve("localhost", 80, parse_networks("127.0.0.0/8,::1/128"))


def _addr(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def test_is_public_accepts_both_versions() -> None:
    assert is_public(_addr("9.9.9.9")) and is_public(_addr("2620:fe::fe"))
