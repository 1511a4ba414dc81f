"""`webhooks migrate`: applies once, refuses edited files, serialises concurrent runs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import psycopg
import pytest

from tests.helpers import run_cli
from worker.errors import MigrationError
from worker.store import migrate

TABLES = {
    "endpoints",
    "outbox",
    "deliveries",
    "attempts",
    "dead_letters",
    "schema_migrations",
    "api_keys",
    "rate_counts",  # the RabbitMQ deployments' rate limiter (unlogged)
    "portal_links",
    "portal_sessions",
    "event_types",  # the platform's catalogue, and each type's schema versions
    "event_type_schemas",
}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select table_name from information_schema.tables where table_schema = 'webhooks'"
        ).fetchall()
    return {r[0] for r in rows}


def test_migrate_creates_every_table_then_is_a_no_op(empty_db_url: str) -> None:
    first = run_cli("migrate", env={"DATABASE_URL": empty_db_url})
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial" in first.stdout
    assert tables(empty_db_url) == TABLES

    second = run_cli("migrate", "--json", env={"DATABASE_URL": empty_db_url})
    assert second.returncode == 0
    assert json.loads(second.stdout) == {"applied": [], "version": migrate.expected_version()}


def test_status_lists_pending_then_applied(empty_db_url: str) -> None:
    before = run_cli("migrate", "--status", "--json", env={"DATABASE_URL": empty_db_url})
    assert before.returncode == 0, before.stderr
    assert [r["state"] for r in json.loads(before.stdout)] == ["pending"] * len(migrate.load())
    run_cli("migrate", env={"DATABASE_URL": empty_db_url})
    after = run_cli("migrate", "--status", env={"DATABASE_URL": empty_db_url})
    assert "applied" in after.stdout and "pending" not in after.stdout


def test_an_applied_file_that_changed_is_refused(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("update webhooks.schema_migrations set checksum = 'x' where version = 1")
    result = run_cli("migrate", env={"DATABASE_URL": db_url})
    assert result.returncode == 1
    assert "was edited after it was applied" in result.stderr
    assert "Traceback" not in result.stderr
    with psycopg.connect(db_url, autocommit=True) as conn, pytest.raises(MigrationError):
        migrate.migrate(conn)  # type: ignore[arg-type]


def test_concurrent_runs_leave_one_clean_schema(empty_db_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "migrate", "--json"],
            env={"DATABASE_URL": empty_db_url, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    applied = [json.loads(out)["applied"] for out, _ in outputs]
    assert sorted(len(a) for a in applied) == [0, 0, 0, len(migrate.load())]
    with psycopg.connect(empty_db_url) as conn:
        count = conn.execute("select count(*) from webhooks.schema_migrations").fetchone()
    assert count == (len(migrate.load()),)


def test_same_process_threads_also_serialise(empty_db_url: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_db_url, autocommit=True) as conn:
                migrate.migrate(conn)  # type: ignore[arg-type]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert tables(empty_db_url) == TABLES


def test_unreachable_database_is_one_line(empty_db_url: str) -> None:
    result = run_cli("migrate", env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot connect to Postgres")
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_database_url_names_the_variable() -> None:
    result = run_cli("migrate")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: DATABASE_URL: not set (e.g. postgresql://localhost/app)"
    ]
