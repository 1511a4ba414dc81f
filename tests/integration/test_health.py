"""/readyz answers 200 only when Postgres and Redis answer and the schema is migrated."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.daemons import Daemon, base_env, eventually, free_port, get, wait_serving
from tests.helpers import run_cli
from worker.observe.health import Readiness
from worker.store import migrate

MIGRATION = "select version, name, checksum from webhooks.schema_migrations"


def restore(url: str, rows: list[tuple[object, ...]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for row in rows:
            conn.execute(
                "insert into webhooks.schema_migrations (version, name, checksum)"
                " values (%s, %s, %s)",
                row,
            )


def forget_migrations(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(MIGRATION).fetchall()
        conn.execute("delete from webhooks.schema_migrations")
    return rows


def test_ready_when_everything_answers(db_url: str, broker_url: str) -> None:
    verdict = Readiness(db_url, broker_url, ttl=0).check()
    assert (verdict.ready, verdict.reason) == (True, "ready")


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis://127.0.0.1:1/0", "broker unavailable: Redis:"),
        ("amqp://guest:guest@127.0.0.1:1/%2F", "broker unavailable: RabbitMQ:"),
    ],
)
def test_not_ready_when_the_configured_broker_does_not_answer(
    db_url: str, url: str, said: str
) -> None:
    verdict = Readiness(db_url, url, ttl=0).check()
    assert not verdict.ready and verdict.reason.startswith(said)


def test_not_ready_while_the_schema_is_behind_and_ready_again_once_migrated(
    db_url: str, redis_url: str
) -> None:
    readiness = Readiness(db_url, redis_url, ttl=0)
    rows = forget_migrations(db_url)
    verdict = readiness.check()
    assert not verdict.ready
    expected = migrate.expected_version()
    assert verdict.reason == (
        f"schema at version 0, this code needs {expected}: run `webhooks migrate`"
    )
    restore(db_url, rows)
    assert readiness.check().ready


def test_a_newer_schema_is_ready_for_the_old_code_still_running(
    db_url: str, redis_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "insert into webhooks.schema_migrations (version, name, checksum)"
            " values (9999, 'from_the_future', 'x')"
        )
    assert Readiness(db_url, redis_url, ttl=0).check().ready


def test_not_ready_on_an_unmigrated_database(empty_db_url: str, redis_url: str) -> None:
    verdict = Readiness(empty_db_url, redis_url, ttl=0).check()
    assert not verdict.ready and verdict.reason.startswith("schema at version 0")


def test_not_ready_when_the_database_is_unreachable_and_the_check_is_quick(
    redis_url: str,
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/app"
    started = time.monotonic()
    verdict = Readiness(url, redis_url, ttl=0).check()
    assert time.monotonic() - started < 3.5
    assert not verdict.ready and verdict.reason.startswith("database unavailable: ")
    assert "\n" not in verdict.reason


def test_not_ready_when_the_broker_is_unreachable(db_url: str) -> None:
    verdict = Readiness(db_url, f"redis://127.0.0.1:{free_port()}/0", ttl=0).check()
    assert not verdict.ready and verdict.reason.startswith("broker unavailable: ")


def test_a_hung_database_fails_the_check_within_its_deadline(db_url: str, redis_url: str) -> None:
    blocker = psycopg.connect(db_url)
    try:
        blocker.execute("lock table webhooks.schema_migrations in access exclusive mode")
        started = time.monotonic()
        verdict = Readiness(db_url, redis_url, ttl=0, timeout=1.0).check()
        assert time.monotonic() - started < 1.5
        assert not verdict.ready and "took longer than 1s" in verdict.reason
    finally:
        blocker.close()


def test_probes_within_the_ttl_share_one_check(db_url: str, redis_url: str) -> None:
    readiness = Readiness(db_url, redis_url, ttl=5)
    first = readiness.check()
    forget_migrations(db_url)
    assert readiness.check() is first  # cached: the database is not asked again at once


# -- through HTTP, on the real relay ------------------------------------------------------


@pytest.fixture
def later_db(admin_url: str) -> Iterator[str]:
    """Return the URL of a database that does not exist yet (dropped at the end)."""
    name = f"webhooks_l_{uuid.uuid4().hex[:12]}"
    yield urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def test_the_relay_s_readyz_follows_the_database_and_the_schema(
    later_db: str, admin_url: str, template_db: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = base_env(
        DATABASE_URL=later_db, REDIS_URL=redis_url, WEBHOOKS_RELAY_METRICS_PORT=str(port)
    )
    relay = Daemon(["relay"], env, tmp_path / "relay.log")
    try:
        wait_serving(relay, port)
        # The database does not exist: alive, not ready.
        assert get(port, "/healthz") == (200, "ok\n")
        code, reason = get(port, "/readyz")
        assert code == 503 and reason.startswith("database unavailable:"), reason
        assert reason.count("\n") == 1

        name = urlsplit(later_db).path.lstrip("/")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'create database "{name}" template "{template_db}"')

        def ready() -> None:
            assert get(port, "/readyz") == (200, "ready\n")

        eventually(ready, timeout=15)

        rows = forget_migrations(later_db)

        def behind() -> None:
            code, reason = get(port, "/readyz")
            assert code == 503 and "run `webhooks migrate`" in reason

        eventually(behind, timeout=10)
        restore(later_db, rows)
        eventually(ready, timeout=10)
        assert relay.proc.poll() is None
    finally:
        status = relay.stop()
    assert status == 0, relay.output()


@pytest.mark.parametrize(
    ("command", "variable"),
    [(["relay"], "WEBHOOKS_RELAY_METRICS_PORT"), (["worker"], "WEBHOOKS_METRICS_PORT")],
)
def test_a_taken_port_stops_the_command_with_one_line(
    command: list[str], variable: str, db_url: str, redis_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli(
            *command,
            env={"DATABASE_URL": db_url, "REDIS_URL": redis_url, variable: str(port)},
            timeout=30,
        )
    assert done.returncode == 1
    assert (
        done.stderr == f"error: cannot listen on port {port} ({variable}): Address already in use\n"
    )
