"""Request bodies are bounded while they are read, before authentication and parsing.

Attacks on a real `webhooks api` process: a chunked body far over the cap with no key, a
Content-Length that lies, a declared length over the cap. The answer is a 413 problem as soon
as the cap is passed, and the server's memory does not grow with what the client sends.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.security.served import (
    Peak,
    Served,
    api_process,
    read_answer,
    request_head,
    status_of,
    stream_chunked,
)
from worker.api.limits import body_cap
from worker.ops import apikeys
from worker.settings import Settings

#: The cap of the default settings (WEBHOOKS_MAX_PAYLOAD_BYTES unset).
CAP = body_cap(Settings().max_payload_bytes)
MIB = 1024 * 1024


@pytest.fixture
def served(tmp_path: Path, db_url: str, redis_url: str) -> Iterator[Served]:
    with api_process(tmp_path, DATABASE_URL=db_url, REDIS_URL=redis_url) as s:
        yield s


def key_of(db_url: str) -> str:
    with psycopg.connect(db_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return apikeys.create(conn, "attacker", tenant_id="acme")[1]


CHUNKED = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}


def test_a_chunked_body_far_over_the_cap_with_no_key_is_refused_and_memory_stays_flat(
    served: Served,
) -> None:
    peak = Peak(served)
    before = peak.kib
    got = stream_chunked(served.port, request_head("/v1/events", headers=CHUNKED), 200 * MIB)
    highest = peak.stop()
    # Refused before a byte of the body is read: the caller is unknown (401).
    assert got.status == 401, got.answer[:300]
    problem = json.loads(got.answer.partition(b"\r\n\r\n")[2])
    assert problem["status"] == 401
    # The server stopped reading near the cap: the client could not push the 200 MB.
    assert got.sent < 50 * MIB, got.sent
    assert (highest - before) * 1024 < 48 * MIB, (before, highest)


def test_a_chunked_body_over_the_cap_with_a_valid_key_gets_413_unparsed(
    served: Served, db_url: str
) -> None:
    headers = {**CHUNKED, "Authorization": f"Bearer {key_of(db_url)}"}
    got = stream_chunked(served.port, request_head("/v1/events", headers=headers), 20 * MIB)
    assert got.status == 413, got.answer[:300]
    assert got.sent < 20 * MIB


def test_a_small_content_length_with_a_bigger_chunked_body_is_refused(served: Served) -> None:
    lying = {**CHUNKED, "Content-Length": "10"}
    got = stream_chunked(served.port, request_head("/v1/events", headers=lying), 5 * MIB)
    assert got.status in (400, 413), got.answer[:300]
    assert got.sent < 5 * MIB


def test_a_declared_length_over_the_cap_is_refused_unread(served: Served) -> None:
    head = request_head(
        "/v1/events", headers={"Content-Length": str(CAP + 1), "Content-Type": "application/json"}
    )
    got = stream_chunked(served.port, head, 0)  # the headers alone: no body is ever sent
    assert got.status == 413, got.answer[:300]


def test_a_chunked_body_under_the_cap_still_reaches_the_route(served: Served, db_url: str) -> None:
    body = json.dumps({"event_type": "a.b", "data": {"n": 1}}).encode()
    head = request_head(
        "/v1/events", headers={**CHUNKED, "Authorization": f"Bearer {key_of(db_url)}"}
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        answer = read_answer(sock)
    assert status_of(answer) == 201, answer[:300]


def test_a_body_from_a_caller_with_no_key_is_never_read(served: Served) -> None:
    # Under the cap, a stranger's body would still be read and parsed before the 401: here
    # the client sends 10 bytes of a declared megabyte and gets its 401 at once.
    head = request_head(
        "/v1/endpoints", headers={"Content-Type": "application/json", "Content-Length": str(MIB)}
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=15) as sock:
        sock.sendall(head + b'{"url": "h')
        answer = read_answer(sock)
    assert status_of(answer) == 401, answer[:300]
    assert b"www-authenticate: bearer" in answer.lower()


def test_a_caller_with_a_key_has_its_body_read(served: Served, db_url: str) -> None:
    body = json.dumps({"event_type": "a.b", "data": {"n": 1}}).encode()
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Authorization": f"Bearer {key_of(db_url)}",
    }
    with socket.create_connection(("127.0.0.1", served.port), timeout=15) as sock:
        sock.sendall(request_head("/v1/events", headers=headers) + body)
        answer = read_answer(sock)
    assert status_of(answer) == 201, answer[:300]
