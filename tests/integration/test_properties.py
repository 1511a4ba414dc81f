"""Properties that need a real Postgres or a real socket, on generated inputs (hypothesis).

- publish: an accepted event reads back from webhooks.outbox equal to what was published;
  a refused one writes nothing and leaves the caller's transaction usable (guarantee 1);
- the command line turns arguments that are not UTF-8 into one usage error, never a
  traceback, wherever they would have reached Postgres;
- redirects are never followed, whatever the status and wherever they point (a private
  address, the cloud metadata address, the same server).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers import Event, PublishError, publish, publish_many
from tests.unit.test_properties import (
    EVENT_TYPES,
    JSON_VALUES,
    KEYS,
    TENANTS,
    UNSERIALISABLE,
)
from worker import cli
from worker.delivery.http import HttpSender as Sender
from worker.delivery.sender import Response
from worker.settings import parse_networks

DB_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def as_json_numbers(value: Any) -> Any:
    """Return `value` as JSON sees it: every number an exact decimal (jsonb's view)."""
    return json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal)


@DB_SETTINGS
@given(
    st.lists(st.tuples(EVENT_TYPES, TENANTS, st.none() | KEYS, JSON_VALUES), min_size=1, max_size=4)
)
def test_an_accepted_event_reads_back_equal(
    db_url: str, events: list[tuple[str, str, str | None, Any]]
) -> None:
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            conn.execute("delete from webhooks.outbox")
        ids = []
        with conn.transaction():
            for event_type, tenant, key, payload in events:
                ids.append(
                    publish(conn, event_type, payload, tenant_id=tenant, idempotency_key=key)
                )
        first: dict[tuple[str, str], str] = {}
        for (event_type, tenant, key, payload), event_id in zip(events, ids, strict=True):
            row = conn.execute(
                "select tenant_id, event_type, idempotency_key, payload::text"
                " from webhooks.outbox where id = %s",
                (event_id,),
            ).fetchone()
            assert row is not None
            if key is not None and (tenant, key) in first:
                assert event_id == first[(tenant, key)]  # the key names the first event
                continue
            if key is not None:
                first[(tenant, key)] = event_id
            assert (row[0], row[1], row[2]) == (tenant, event_type, key)
            assert json.loads(row[3], parse_float=Decimal, parse_int=Decimal) == as_json_numbers(
                payload
            )
        count = conn.execute("select count(*) from webhooks.outbox").fetchone()
        assert count is not None and count[0] == len(set(ids))


@DB_SETTINGS
@given(
    st.one_of(
        st.tuples(st.just("type"), st.sampled_from(["", " x", "a b", "é", "x" * 256])),
        st.tuples(st.just("tenant"), st.sampled_from(["", "a b", "\x00", "t\udcff"])),
        st.tuples(st.just("key"), st.sampled_from(["", "k\x00", "\udcff", "k" * 256])),
        st.tuples(st.just("payload"), UNSERIALISABLE),
    ),
    st.booleans(),
)
def test_a_refused_event_writes_nothing_and_leaves_the_transaction_usable(
    db_url: str, bad: tuple[str, Any], batch: bool
) -> None:
    field, value = bad
    event = Event(
        value if field == "type" else "a.b",
        value if field == "payload" else {"ok": True},
        value if field == "tenant" else "default",
        value if field == "key" else None,
    )
    with psycopg.connect(db_url) as conn:
        before = conn.execute("select count(*) from webhooks.outbox").fetchone()
        with conn.transaction():
            with pytest.raises(PublishError):
                if batch:
                    publish_many(conn, [Event("fine.event", {}), event])
                else:
                    publish(
                        conn,
                        event.event_type,
                        event.payload,
                        tenant_id=event.tenant_id,
                        idempotency_key=event.idempotency_key,
                    )
            # Nothing was sent: the caller's transaction goes on.
            publish(conn, "after.refusal", {})
        after = conn.execute("select count(*) from webhooks.outbox").fetchone()
    assert before is not None and after is not None and after[0] == before[0] + 1


# -- the command line -----------------------------------------------------------------------

NOT_UTF8 = "\udcff"  # what Python makes of the byte 0xff in argv


@pytest.mark.parametrize(
    "args",
    [
        ["publish", "a.b", "--data", f'"{NOT_UTF8}"'],
        ["publish", "a.b", "--data", "{}", "--idempotency-key", NOT_UTF8],
        ["publish", "a.b", "--data", "{}", "--tenant", NOT_UTF8],
        ["dlq", "list", "--tenant", NOT_UTF8],
        ["dlq", "list", "--event-type", NOT_UTF8],
        ["dlq", "replay", "--tenant", NOT_UTF8],
        ["deliveries", "list", "--tenant", NOT_UTF8],
        ["endpoint", "list", "--tenant", NOT_UTF8],
        ["endpoint", "add", "https://example.com/", "--description", NOT_UTF8],
        ["endpoint", "add", "https://example.com/", "--header", f"X-A: {NOT_UTF8}"],
        ["endpoint", "add", f"https://example.com/{NOT_UTF8}"],
    ],
)
def test_an_argument_that_is_not_utf8_is_one_usage_error(db_url: str, args: list[str]) -> None:
    cli.settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.main, args, env={"DATABASE_URL": db_url})
    finally:
        cli.settings.cache_clear()
    assert result.exit_code == 2, (result.exception, result.stderr)
    # (endpoint add first warns that the secret is stored unencrypted: no key here)
    lines = [x for x in result.stderr.strip().splitlines() if not x.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    with psycopg.connect(db_url) as conn:
        counts = conn.execute(
            "select (select count(*) from webhooks.outbox),"
            " (select count(*) from webhooks.endpoints)"
        ).fetchone()
    assert counts == (0, 0)


# -- redirects ------------------------------------------------------------------------------


class Redirector:
    """Answer every request with the status and Location the current example asks for."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.answer = "302 Found"
        self.location = "/"
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data.split(b"\r\n", 1)[0].decode())
                conn.sendall(
                    f"HTTP/1.1 {self.answer}\r\nLocation: {self.location}\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
                )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.listener.close()


@pytest.fixture(scope="module")
def redirector() -> Iterator[Redirector]:
    server = Redirector()
    yield server
    server.close()


LOCATIONS = st.sampled_from(
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/admin",
        "http://127.0.0.1:6379/",
        "http://localhost/",
        "http://[::ffff:127.0.0.1]/",
        "http://0x7f.1/",
        "https://example.com/elsewhere",
        "/same-server-other-path",
    ]
)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=300, max_value=399), LOCATIONS)
def test_a_redirect_is_never_followed(redirector: Redirector, code: int, location: str) -> None:
    redirector.answer, redirector.location = f"{code} Moved", location
    redirector.requests.clear()

    async def attempt() -> Response:
        # Loopback is allowed here, as in development: even then nothing is followed.
        http = Sender(
            allowed_networks=parse_networks("127.0.0.0/8,::1/128"),
            connect_timeout=2,
            request_timeout=5,
            user_agent="webhooks-test/1",
        )
        try:
            return await http.send(f"http://127.0.0.1:{redirector.port}/hook", b"{}", {})
        finally:
            await http.close()

    response = asyncio.run(attempt())
    assert response.status_code == code
    assert response.retry_after is None
    assert redirector.requests == ["POST /hook HTTP/1.1"]  # the attempt itself, nothing more
