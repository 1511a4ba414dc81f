"""Endpoint URLs and headers an outsider may send: what create accepts, the sender can send.

Attacks through the real surfaces: the `webhooks api` process over HTTP, the `webhooks`
command in a subprocess, and the real sender (aiohttp) against a receiver on 127.0.0.1.
A spelling of loopback that the sender normalises (IDNA/NFKC: circled and full-width
digits, ideographic dots, full-width letters) is refused at create, naming
WEBHOOKS_ALLOWED_NETWORKS; a header value with a control character, which the HTTP client
would refuse at every attempt for ever, is refused at create too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.daemons import Daemon, base_env, free_port, wait_serving
from tests.helpers import run_cli
from tests.receiver import Receiver, running_receiver
from tests.spellings import inet_aton, unicode_spelling
from worker.delivery.http import HttpSender as Sender
from worker.delivery.http import classify_failure
from worker.errors import InvalidEndpoint
from worker.ops import apikeys
from worker.ops.validation import check_destination, validate_url
from worker.policy.outcome import ErrorKind

UNICODE_LOOPBACK = [
    "http://①②⑦.0.0.1/hook",
    "http://127。0。0。1/hook",
    "http://１２７.0.0.1/hook",
    "http://ｌｏｃａｌｈｏｓｔ/hook",
]
CONTROL_VALUES = ["a\u000bb", "a\u007f", "\u001b[31mred", "a\u0001b"]
#: A public address, so that nothing is resolved and nothing but the header is at fault.
PUBLIC_URL = "https://93.184.215.14/hook"
PROBLEM = "application/problem+json"


def endpoints(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select count(*) from webhooks.endpoints").fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def api(db_url: str, redis_url: str, tmp_path: Path) -> Iterator[httpx.Client]:
    """Run `webhooks api` and yield a client holding a tenant's key."""
    with psycopg.connect(db_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        key = apikeys.create(conn, "attacker", tenant_id="acme")[1]
    port = free_port()
    env = base_env(DATABASE_URL=db_url, REDIS_URL=redis_url)
    daemon = Daemon(["api", "--port", str(port)], env, tmp_path / "api.log")
    try:
        wait_serving(daemon, port)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        ) as client:
            yield client
    finally:
        daemon.stop()


def test_the_api_refuses_every_unicode_spelling_of_loopback(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    with api(db_url, redis_url, tmp_path) as client:
        for url in UNICODE_LOOPBACK:
            answer = client.post("/v1/endpoints", json={"url": url})
            assert answer.status_code == 422, (url, answer.status_code, answer.text)
            assert answer.headers["content-type"].startswith(PROBLEM)
            assert "WEBHOOKS_ALLOWED_NETWORKS" in answer.json()["detail"], answer.text
    assert endpoints(db_url) == 0


def test_the_api_refuses_header_values_with_control_characters(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    with api(db_url, redis_url, tmp_path) as client:
        for value in CONTROL_VALUES:
            answer = client.post(
                "/v1/endpoints", json={"url": PUBLIC_URL, "headers": {"X-Token": value}}
            )
            assert answer.status_code == 422, (value, answer.status_code, answer.text)
            assert answer.headers["content-type"].startswith(PROBLEM)
            assert "X-Token" in answer.json()["detail"], answer.text
        # A tab is a field value's own whitespace: accepted, and sent as it is.
        kept = client.post(
            "/v1/endpoints", json={"url": PUBLIC_URL, "headers": {"X-Token": "a\tb"}}
        )
        assert kept.status_code == 201, kept.text
    assert endpoints(db_url) == 1


@pytest.mark.parametrize("url", UNICODE_LOOPBACK)
def test_endpoint_add_refuses_a_unicode_spelling_of_loopback(db_url: str, url: str) -> None:
    done = run_cli("endpoint", "add", url, env={"DATABASE_URL": db_url})
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: URL host "), done.stderr
    assert "WEBHOOKS_ALLOWED_NETWORKS" in lines[0]
    assert endpoints(db_url) == 0


@pytest.mark.parametrize("value", CONTROL_VALUES)
def test_endpoint_add_refuses_a_header_value_with_a_control_character(
    db_url: str, value: str
) -> None:
    done = run_cli(
        "endpoint", "add", PUBLIC_URL, "--header", f"X-Token: {value}", env={"DATABASE_URL": db_url}
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "X-Token" in lines[0] and "\x1b" not in lines[0], done.stderr
    assert endpoints(db_url) == 0


# -- create and the real sender agree ------------------------------------------------------

#: Only loopback is allowed, and only addresses that are not public are generated: an
#: attempt create accepts reaches 127.0.0.0/8 and nothing else.
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
NOT_PUBLIC = [
    "127.0.0.1",
    "127.0.0.2",
    "10.0.0.1",
    "169.254.169.254",
    "192.168.0.1",
    "0.0.0.0",
    "100.64.0.1",
]


@st.composite
def not_public_hosts(draw: st.DrawFn) -> str:
    address = ipaddress.IPv4Address(draw(st.sampled_from(NOT_PUBLIC)))
    plain = draw(st.just(str(address)) | inet_aton(address))
    host = draw(st.just(plain) | unicode_spelling(plain))
    host += draw(st.sampled_from(["", "", "."]))
    return draw(st.sampled_from([host, host, f"[::ffff:{address}]", "[::1]"]))


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


def nowhere(host: str, port: int) -> list[tuple[Any, ...]]:
    raise OSError(f"{host}: no name resolves in this test")


def send(url: str) -> ErrorKind | int:
    """POST once through a fresh sender as the engine builds it; the status or error kind."""

    async def attempt() -> ErrorKind | int:
        sender = Sender(
            allowed_networks=LOOPBACK,
            connect_timeout=5.0,
            request_timeout=10.0,
            user_agent="webhooks-test/1",
            resolver=nowhere,
        )
        try:
            response = await sender.send(url, b"{}", {"webhook-id": "msg_1"})
        except Exception as exc:
            kind = classify_failure(exc).error_kind
            assert kind is not None
            return kind
        finally:
            await sender.close()
        return response.status_code

    return asyncio.run(attempt())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(host=not_public_hosts())
@example(host="①②⑦.0.0.1")
@example(host="127。0。0。1")
@example(host="１２７.0.0.1")
@example(host="ｌｏｃａｌｈｏｓｔ")
@example(host="127.0.0.1.")
@example(host="2130706433")
@example(host="0x7f.1")
@example(host="⑩.0.0.1")
def test_create_accepts_exactly_the_literals_the_real_sender_does_not_block(
    receiver: Receiver, host: str
) -> None:
    url = f"http://{host}:{receiver.port}/spelling"
    try:
        validate_url(url)
        warning = check_destination(url, LOOPBACK, nowhere)
    except InvalidEndpoint:
        refused = True
    else:
        refused = False
        if warning is not None:
            return  # a name, resolved at every attempt: DNS decides, not the spelling
    before = len(receiver.requests)
    got = send(url)
    if refused:
        assert got == ErrorKind.BLOCKED, (url, got)
        assert len(receiver.requests) == before, "a refused spelling reached the receiver"
    else:
        # Reached 127.0.0.0/8: the receiver on 127.0.0.1 answers, another address refuses
        # the connection. Never blocked, never a request the client could not make.
        assert got == 200 or got == ErrorKind.CONNECT, (url, got)


def test_the_property_sees_the_receiver(receiver: Receiver) -> None:
    assert send(receiver.url("/seen")) == 200
    assert json.loads(receiver.to("/seen")[0].body) == {}
