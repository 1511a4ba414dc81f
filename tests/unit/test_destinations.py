"""Endpoint URLs no attempt could ever reach are refused; doubtful host names are warned of."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from worker.errors import InvalidEndpoint
from worker.ops.endpoints import check_destination

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def answers(*addresses: str) -> Any:
    def resolver(host: str, port: int) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return resolver


def nowhere(host: str, port: int) -> list[tuple[Any, ...]]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def unused(host: str, port: int) -> list[tuple[Any, ...]]:
    raise AssertionError("an IP literal is never resolved")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/", "private address 10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data", "link-local address 169.254.169.254"),
        ("http://127.0.0.1:8080/hook", "loopback address 127.0.0.1"),
        ("http://[::1]/", "loopback address ::1"),
        ("http://2130706433/", "loopback address 127.0.0.1"),
        ("http://[::ffff:10.1.2.3]/", "embeds 10.1.2.3"),
    ],
)
def test_an_address_outside_the_allowed_networks_is_refused(url: str, reason: str) -> None:
    with pytest.raises(InvalidEndpoint) as caught:
        check_destination(url, (), unused)
    assert reason in str(caught.value)
    assert "WEBHOOKS_ALLOWED_NETWORKS" in str(caught.value)


@pytest.mark.parametrize("url", ["http://localhost/", "http://LOCALHOST:9/", "http://a.localhost/"])
def test_localhost_is_refused_unless_loopback_is_allowed(url: str) -> None:
    with pytest.raises(InvalidEndpoint, match="WEBHOOKS_ALLOWED_NETWORKS"):
        check_destination(url, (), answers("127.0.0.1"))
    with pytest.raises(InvalidEndpoint, match="WEBHOOKS_ALLOWED_NETWORKS"):
        check_destination(url, (), nowhere)
    assert check_destination(url, LOOPBACK, answers("127.0.0.1", "::1")) is None


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/", "http://[::1]:9/", "https://93.184.215.14/", "https://x.io/"]
)
def test_allowed_and_public_destinations_pass_quietly(url: str) -> None:
    assert check_destination(url, LOOPBACK, answers("93.184.215.14")) is None


def test_a_name_resolving_to_blocked_addresses_is_a_warning() -> None:
    warning = check_destination("https://hooks.corp.example/", (), answers("10.1.2.3"))
    assert warning is not None
    assert "hooks.corp.example" in warning and "10.1.2.3" in warning
    assert "WEBHOOKS_ALLOWED_NETWORKS" in warning
    allowed = (ipaddress.ip_network("10.0.0.0/8"),)
    assert check_destination("https://hooks.corp.example/", allowed, answers("10.1.2.3")) is None


def test_a_name_that_does_not_resolve_is_a_warning() -> None:
    warning = check_destination("https://hooks.example.invalid/", (), nowhere)
    assert warning == "hooks.example.invalid does not resolve: deliveries fail until it does"


def test_a_name_server_that_never_answers_is_a_warning_within_the_timeout() -> None:
    import threading

    stuck = threading.Event()

    def hangs(host: str, port: int) -> list[tuple[Any, ...]]:
        stuck.wait(5)
        return []

    try:
        warning = check_destination("https://slow.example/", (), hangs, timeout=0.2)
    finally:
        stuck.set()
    assert warning is not None and "does not resolve" in warning
