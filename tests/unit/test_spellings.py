"""One reading of a URL and of a header for create and send: what one refuses, both refuse.

The URLs are IP literals in every spelling a user (or an attacker) can type: Unicode
digits and dots that IDNA/NFKC folds to ASCII, the inet_aton forms (one to four parts,
decimal, octal, hex), IPv6 written long, short or embedding IPv4, a trailing dot. The
sender's side is `Sender._check_literal` followed by what aiohttp does next (connect to a
host it takes for an address, else ask the guard's resolver): the real aiohttp run is in
tests/security/test_destinations.py.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
import yarl
from aiohttp import helpers as aiohttp_helpers
from aiohttp.http_writer import _py_serialize_headers, _serialize_headers
from hypothesis import example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from tests.spellings import inet_aton, unicode_spelling
from worker.delivery.dns import resolve
from worker.delivery.http import HttpSender as Sender
from worker.delivery.request import request_headers
from worker.errors import BlockedDestination, InvalidEndpoint
from worker.ops.validation import check_destination, validate_header, validate_url
from worker.policy.destination import target
from worker.settings import IPNetwork

net = ipaddress.ip_network

ALLOWED: list[tuple[IPNetwork, ...]] = [
    (),
    (net("127.0.0.0/8"),),
    (net("10.0.0.0/8"), net("::1/128")),
    (net("0.0.0.0/0"), net("::/0")),
]
INTERESTING_V4 = [
    "127.0.0.1",
    "127.1.2.3",
    "10.0.0.1",
    "169.254.169.254",
    "192.168.1.1",
    "0.0.0.0",
    "8.8.8.8",
    "93.184.215.14",
    "255.255.255.255",
]
INTERESTING_V6 = [
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::127.0.0.1",
    "64:ff9b::a00:1",
    "2002:7f00:1::",
    "fe80::1",
    "fd00::1",
    "2001:4860:4860::8888",
]


def v4_addresses() -> st.SearchStrategy[ipaddress.IPv4Address]:
    return st.sampled_from(INTERESTING_V4).map(ipaddress.IPv4Address) | st.ip_addresses(v=4)


@st.composite
def v4_hosts(draw: st.DrawFn) -> str:
    address = draw(v4_addresses())
    plain = draw(st.just(str(address)) | inet_aton(address))
    host = draw(st.just(plain) | unicode_spelling(plain))
    return host + draw(st.sampled_from(["", "", "."]))


@st.composite
def v6_hosts(draw: st.DrawFn) -> str:
    address = draw(st.sampled_from(INTERESTING_V6).map(ipaddress.IPv6Address))
    address = draw(st.just(address) | st.ip_addresses(v=6))
    text = draw(st.sampled_from([address.compressed, address.exploded, address.compressed]))
    if address.ipv4_mapped is not None and draw(st.booleans()):
        text = f"::ffff:{address.ipv4_mapped}"
    text = draw(st.sampled_from([text, text.upper()]))
    return f"[{text}]"


HOSTS = v4_hosts() | v6_hosts()
URLS = st.builds(
    lambda scheme, host, port: f"{scheme}://{host}{port}/hook",
    st.sampled_from(["http", "https"]),
    HOSTS,
    st.sampled_from(["", ":8080", ":9"]),
)


class Asked:
    """A resolver that knows no name, and remembers whether it was asked."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, host: str, port: int) -> list[tuple[Any, ...]]:
        self.names.append(host)
        raise OSError(f"{host} does not resolve here")


def create_refuses(url: str, allowed: tuple[IPNetwork, ...], resolver: Asked) -> bool | None:
    """Return True if create refuses ``url``, False if it accepts it, None for a warning."""
    try:
        validate_url(url)
        warning = check_destination(url, allowed, resolver)
    except InvalidEndpoint:
        return True
    return None if warning is not None else False


def send_blocks(url: str, allowed: tuple[IPNetwork, ...], resolver: Asked) -> bool:
    """Return whether no attempt to ``url`` would ever reach a connection.

    The sender's own check, then what aiohttp does with the URL's host: connect to it as it
    is when it takes it for an address (refusing legacy IPv4 forms itself when it has that
    check), else resolve it through the guard (`worker.delivery.dns.resolve`).
    """
    sender = Sender(
        allowed_networks=allowed,
        connect_timeout=1.0,
        request_timeout=1.0,
        user_agent="webhooks-test/1",
        resolver=resolver,
    )
    try:
        sender._check_literal(url)
    except (BlockedDestination, ValueError):
        return True
    host = yarl.URL(url).raw_host or ""
    if aiohttp_helpers.is_ip_address(host):
        canonical = getattr(aiohttp_helpers, "is_canonical_ipv4_address", None)
        return ":" not in host and canonical is not None and not canonical(host)
    try:
        resolve(host, 443, allowed, resolver)
    except BlockedDestination:
        return True
    return False


@settings(deadline=None)
@given(URLS, st.sampled_from(ALLOWED))
@example("http://①②⑦.0.0.1/", ())
@example("http://127。0。0。1/", ())
@example("http://１２７.0.0.1/", ())
@example("http://127.0.0.1./", (net("127.0.0.0/8"),))
@example("http://2130706433/", (net("127.0.0.0/8"),))
@example("http://0x7f.1/", ())
@example("http://[::ffff:127.0.0.1]/", ())
def test_create_refuses_exactly_the_ip_literals_the_sender_blocks(
    url: str, allowed: tuple[IPNetwork, ...]
) -> None:
    asked_at_send, asked_at_create = Asked(), Asked()
    blocked = send_blocks(url, allowed, asked_at_send)
    refused = create_refuses(url, allowed, asked_at_create)
    if asked_at_send.names:
        # Not a literal after all (a spelling IDNA keeps as a name): the sender asked DNS,
        # which knows nothing here, so create could not have accepted it quietly.
        assert blocked and refused is not False
        return
    assert refused is blocked, (url, allowed)
    assert not asked_at_create.names, "a literal is never resolved at create"


@settings(deadline=None)
@given(v4_addresses(), st.data())
def test_every_unicode_spelling_is_read_as_the_address_it_folds_to(
    address: ipaddress.IPv4Address, data: st.DataObject
) -> None:
    host = data.draw(unicode_spelling(str(address)))
    assert target(f"http://{host}/").address == address


@pytest.mark.parametrize(
    "host", ["①②⑦.0.0.1", "127。0。0。1", "１２７.0.0.1", "127｡0｡0｡1", "127．0．0．1"]
)
def test_a_unicode_spelling_of_loopback_is_refused_naming_the_setting(host: str) -> None:
    with pytest.raises(InvalidEndpoint, match="WEBHOOKS_ALLOWED_NETWORKS") as caught:
        check_destination(f"http://{host}/", (), Asked())
    assert f"URL host {host} (read as 127.0.0.1) is a loopback address 127.0.0.1" in str(
        caught.value
    )


def test_a_unicode_spelling_of_localhost_is_refused_naming_the_setting() -> None:
    with pytest.raises(InvalidEndpoint, match="WEBHOOKS_ALLOWED_NETWORKS") as caught:
        check_destination("http://ｌｏｃａｌｈｏｓｔ/", (), Asked())
    assert "(read as localhost)" in str(caught.value)


# -- headers ------------------------------------------------------------------------------

TOKENS = st.from_regex(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,30}", fullmatch=True)
ASCII_VALUES = st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=60)


def client_writes(headers: dict[str, str]) -> bool:
    """Return whether aiohttp serialises ``headers`` (both its C and Python writers)."""
    try:
        for serialize in {_serialize_headers, _py_serialize_headers}:
            serialize("POST /hook HTTP/1.1", CIMultiDict(headers))
    except ValueError:
        return False
    return True


@settings(deadline=None)
@given(TOKENS, st.text(max_size=80) | ASCII_VALUES)
@example("X-Tab", "a\tb")
@example("X-Vt", "a\x0bb")
@example("X-Del", "a\x7f")
@example("X-Esc", "\x1b[31mred")
@example("X-Nel", "a\x85b")
def test_a_header_accepted_at_create_is_built_and_written_by_the_sender(
    name: str, value: str
) -> None:
    try:
        validate_header(name, value)
    except InvalidEndpoint:
        return
    headers = request_headers({name: value}, "msg_1", 1700000000, "v1,sig")
    assert headers[name] == value
    assert client_writes(headers)


@settings(deadline=None)
@given(TOKENS, ASCII_VALUES)
@example("X-Tab", "a\tb")
@example("X-Vt", "a\x0bb")
@example("X-Del", "a\x7f")
@example("X-Nul", "a\x00b")
def test_create_refuses_exactly_the_ascii_header_values_the_client_cannot_write(
    name: str, value: str
) -> None:
    lower = name.lower()
    if lower.startswith(("webhook-", "proxy-")) or lower in {"host", "te", "expect"}:
        return
    try:
        validate_header(name, value)
    except InvalidEndpoint as exc:
        if "set by the delivery" in str(exc):
            return
        assert not client_writes({name: value}), (name, value)
        return
    assert client_writes({name: value})


@pytest.mark.parametrize("value", ["a\x0bb", "a\x7f", "\x1b[2J", "a\x00b", "a\x01"])
def test_a_header_stored_before_the_rule_fails_before_any_connection(value: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        request_headers({"X-Old": value}, "msg_1", 1700000000, "v1,sig")
