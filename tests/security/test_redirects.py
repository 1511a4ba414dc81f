"""No answer sends a client to a host it named itself: a trailing slash is not a redirect.

Starlette redirected `/v1/status/` to the spelling without the slash, building an absolute
URL from the Host header: with `Host: evil.example` the API pointed clients at
http://evil.example/v1/status (cache poisoning, open redirect behind a proxy).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.served import Served, api_process, read_answer, request_head, status_of

PATHS = [
    "/v1/status/",
    "/v1/endpoints/",
    "/v1/deliveries//",
    "/healthz/",
    "/docs/",
]


@pytest.fixture
def served(tmp_path: Path, db_url: str, redis_url: str) -> Iterator[Served]:
    with api_process(tmp_path, DATABASE_URL=db_url, REDIS_URL=redis_url) as s:
        yield s


def get(port: int, path: str, host: str) -> bytes:
    head = request_head(path, method="GET").replace(b"Host: 127.0.0.1", f"Host: {host}".encode())
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        return read_answer(sock)


@pytest.mark.parametrize("path", PATHS)
def test_a_trailing_slash_is_answered_in_place_not_redirected_to_the_host_header(
    served: Served, path: str
) -> None:
    answer = get(served.port, path, "evil.example")
    assert b"evil.example" not in answer
    assert not 300 <= status_of(answer) < 400, answer[:300]
    # The same route as without the slash: the API routes ask for a key, the others answer.
    without = get(served.port, path.rstrip("/"), "127.0.0.1")
    assert status_of(answer) == status_of(without), (answer[:200], without[:200])


@pytest.mark.parametrize("path", ["/portal/", "/portal/endpoints/", "/portal/enter/"])
def test_the_portal_never_redirects_to_the_host_header(served: Served, path: str) -> None:
    answer = get(served.port, path, "evil.example")
    assert b"evil.example" not in answer
    assert not 300 <= status_of(answer) < 400, answer[:300]
