"""deploy/roles.sql: the producer can publish and nothing else; the service role runs it all."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import errors

from producers import apublish, publish, publish_many
from tests.helpers import run_cli
from tests.pipeline import Pipeline
from tests.receiver import Receiver, status
from worker.observe.health import Readiness

ROLES = Path(__file__).resolve().parents[2] / "deploy" / "roles.sql"

#: What publish() needs on webhooks.outbox, column by column, and nothing more.
PRODUCER_NEEDS = {
    *(
        ("INSERT", c)
        for c in (
            "id",
            "tenant_id",
            "event_type",
            "payload",
            "idempotency_key",
            "ordering_key",
            "trace_context",
        )
    ),
    *(("SELECT", c) for c in ("id", "tenant_id", "idempotency_key")),
    ("UPDATE", "idempotency_key"),
}


def as_role(url: str, role: str) -> str:
    """Return ``url`` with every session started as ``role`` (the login user is a member)."""
    return f"{url}{'&' if '?' in url else '?'}options={quote(f'-c role={role}')}"


@pytest.fixture
def roles(db_url: str) -> Iterator[tuple[str, str]]:
    """Apply deploy/roles.sql under role names of this test's own; drop them afterwards."""
    suffix = uuid.uuid4().hex[:8]
    producer, service = f"webhooks_producer_{suffix}", f"webhooks_service_{suffix}"
    sql = ROLES.read_text().replace("webhooks_producer", producer)
    sql = sql.replace("webhooks_service", service)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.encode())
        conn.execute(sql.encode())  # idempotent: run again after every migration
    yield producer, service
    with psycopg.connect(db_url, autocommit=True) as conn:
        for role in (producer, service):
            conn.execute(f"drop owned by {role}".encode())
            conn.execute(f"drop role {role}".encode())


def test_the_producer_publishes_with_idempotency_keys(db_url: str, roles: tuple[str, str]) -> None:
    producer, _ = roles
    with psycopg.connect(as_role(db_url, producer)) as conn:
        with conn.transaction():
            first = publish(conn, "invoice.paid", {"n": 1}, idempotency_key="k1")
        with conn.transaction():
            again = publish(conn, "invoice.paid", {"n": 1}, idempotency_key="k1")
            plain = publish(conn, "invoice.paid", {"n": 2})
        with conn.transaction():
            batch = publish_many(
                conn,
                [
                    {"event_type": "a.b", "payload": {}, "idempotency_key": "k1"},
                    {"event_type": "a.b", "payload": {}, "idempotency_key": "k2"},
                    ("a.b", {}),
                ],
            )
    assert again == first and plain != first
    assert batch[0] == first and len(set(batch)) == 3

    async def publish_async() -> str:
        async with (
            await psycopg.AsyncConnection.connect(as_role(db_url, producer)) as aconn,
            aconn.transaction(),
        ):
            return await apublish(aconn, "a.b", {}, idempotency_key="k2")

    assert asyncio.run(publish_async()) == batch[1]
    with psycopg.connect(db_url) as admin:
        row = admin.execute("select count(*) from webhooks.outbox").fetchone()
    assert row == (4,)


@pytest.mark.parametrize(
    "statement",
    [
        "select payload from webhooks.outbox",
        "select * from webhooks.outbox",
        "update webhooks.outbox set event_type = 'x'",
        "delete from webhooks.outbox",
        "select * from webhooks.endpoints",
        "select * from webhooks.deliveries",
        "select * from webhooks.dead_letters",
        "insert into webhooks.deliveries (tenant_id, event_id, endpoint_id, event_created_at)"
        " values ('default', gen_random_uuid(), gen_random_uuid(), now())",
        "create table webhooks.mine (id int)",
    ],
)
def test_the_producer_can_do_nothing_else(
    db_url: str, roles: tuple[str, str], statement: str
) -> None:
    producer, _ = roles
    with (
        psycopg.connect(as_role(db_url, producer), autocommit=True) as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        conn.execute(statement.encode())


def test_the_producer_holds_exactly_what_publish_needs(db_url: str, roles: tuple[str, str]) -> None:
    producer, _ = roles
    with psycopg.connect(db_url) as conn:
        columns = conn.execute(
            "select privilege_type, column_name from information_schema.column_privileges"
            " where grantee = %s",
            [producer],
        ).fetchall()
        tables = conn.execute(
            "select privilege_type from information_schema.table_privileges where grantee = %s",
            [producer],
        ).fetchall()
    assert set(columns) == PRODUCER_NEEDS
    assert tables == []


@pytest.mark.parametrize(("privilege", "column"), sorted(PRODUCER_NEEDS))
def test_publish_fails_without_any_one_of_the_producer_s_privileges(
    db_url: str, roles: tuple[str, str], privilege: str, column: str
) -> None:
    producer, _ = roles
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(f"revoke {privilege} ({column}) on webhooks.outbox from {producer}".encode())
    with (
        psycopg.connect(as_role(db_url, producer)) as conn,
        pytest.raises(errors.InsufficientPrivilege),
        conn.transaction(),
    ):
        publish(conn, "a.b", {}, idempotency_key="k")


def test_the_service_role_runs_the_relay_the_workers_and_the_cli(
    db_url: str, redis_url: str, roles: tuple[str, str], receiver: Receiver
) -> None:
    _, service = roles
    url = as_role(db_url, service)
    p = Pipeline(url, redis_url)
    try:
        p.start_relay()
        p.start_worker()
        p.endpoint(receiver.url("/ok"))
        down, _ = p.endpoint(receiver.on("/down", status(500)), event_types=["a.b"])
        gone, _ = p.endpoint(receiver.on("/gone", status(410)), event_types=["a.b"])
        p.publish("a.b", {"n": 1})
        p.publish("c.d", {"n": 2})
        p.settle()
        states = p.rows("select status, count(*) as n from webhooks.deliveries group by 1")
        assert {r["status"]: r["n"] for r in states} == {"succeeded": 2, "dead": 2}
        assert Readiness(url, redis_url, ttl=0).check().ready

        env = {"DATABASE_URL": url, "REDIS_URL": redis_url}
        for args in (
            ["status", "--json"],
            ["check"],
            ["deliveries", "list"],
            ["dlq", "list"],
            ["endpoint", "enable", gone],
            ["dlq", "replay", "--all"],
            ["endpoint", "disable", down, "--reason", "maintenance"],
            ["endpoint", "rotate-secret", down],
            ["prune", "--older-than", "0s", "--include-dead", "--yes"],
            ["endpoint", "delete", gone, "--yes"],
        ):
            done = run_cli(*args, env=env)
            assert done.returncode == 0, (args, done.stderr)
        assert json.loads(run_cli("status", "--json", env=env).stdout)
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in (
                "update webhooks.attempts set error = 'edited'",  # guarantee 4
                "insert into webhooks.schema_migrations values (99, 'x', 'x', now())",
                "create table webhooks.mine (id int)",
                "drop table webhooks.outbox",
            ):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(statement.encode())
    finally:
        p.stop()
