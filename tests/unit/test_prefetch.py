"""A URL's host resolved before a connection is taken is not resolved again inside it."""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

import pytest

from worker.errors import InvalidEndpoint
from worker.ops.prefetch import Prefetched, prefetch
from worker.ops.validation import check_destination

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


class Counting:
    """A name server that answers ``addresses`` and counts what it is asked."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[tuple[Any, ...]]:
        self.asked.append((host, port))
        if not self.addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in self.addresses]


def test_the_check_after_a_prefetch_asks_no_name_server() -> None:
    dns = Counting("127.0.0.1")
    answers = prefetch("http://hooks.example:8080/in", LOOPBACK, dns)
    assert dns.asked == [("hooks.example", 8080)]
    assert check_destination("http://hooks.example:8080/in", LOOPBACK, answers) is None
    assert dns.asked == [("hooks.example", 8080)]


def test_a_refusal_or_a_warning_is_left_to_the_check_and_comes_out_the_same() -> None:
    dns = Counting("10.1.2.3")
    answers = prefetch("https://hooks.corp.example/", (), dns)
    warning = check_destination("https://hooks.corp.example/", (), answers)
    assert warning is not None and "private address" in warning
    nowhere = Counting()
    answers = prefetch("https://gone.example/", (), nowhere)
    warning = check_destination("https://gone.example/", (), answers)
    assert warning is not None and "does not resolve" in warning
    assert len(nowhere.asked) == 1
    # Refused without asking anyone, then and again.
    answers = prefetch("http://127.0.0.1/", (), Counting())
    with pytest.raises(InvalidEndpoint):
        check_destination("http://127.0.0.1/", (), answers)
    # A URL that is not valid is left to the registry's own checks.
    assert isinstance(prefetch("ftp://x", (), Counting()), Prefetched)
    assert isinstance(prefetch(None, (), Counting()), Prefetched)


def test_a_name_still_resolving_when_asked_again_does_not_resolve_at_once() -> None:
    stuck = threading.Event()

    def hangs(host: str, port: int) -> list[tuple[Any, ...]]:
        stuck.wait(5)
        return []

    answers = Prefetched(hangs)
    try:
        assert check_destination("https://slow.example/", (), answers, timeout=0.2)
        with pytest.raises(OSError, match="no answer in time"):
            answers("slow.example", 443)
    finally:
        stuck.set()
