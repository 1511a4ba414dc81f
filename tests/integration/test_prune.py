"""`webhooks prune` never guesses: a retention needs a unit, and one under an hour needs a yes.

Driven as an operator would, against a real Postgres holding finished events of known ages.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psycopg
import pytest

from producers.ids import uuid7_floor
from tests.integration.test_commands import _clean_env, on_terminal

#: Ages of the finished events each test starts with, in seconds: 20 minutes, 2 days.
AGES = (20 * 60, 2 * 86400)


@pytest.fixture
def history(db_url: str) -> str:
    """A database holding one relayed event with no delivery left per age in AGES."""
    now_ms = int(time.time() * 1000)
    with psycopg.connect(db_url) as conn:
        for i, age in enumerate(AGES):
            conn.execute(
                "insert into webhooks.outbox (id, event_type, payload, created_at, relayed_at)"
                " values (%s, 'a.b', '{}', now() - make_interval(secs => %s), now())",
                (uuid7_floor(now_ms - age * 1000 + i), age),
            )
    return db_url


def events(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select count(*) from webhooks.outbox").fetchone()
    assert row is not None
    return int(row[0])


def prune(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `webhooks prune` with no terminal on stdin, as cron or CI would."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "prune", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**_clean_env(), "DATABASE_URL": db_url},
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("bare", ["30", "0", "1.5"])
def test_a_retention_without_a_unit_is_refused_and_nothing_is_deleted(
    history: str, bare: str
) -> None:
    result = prune(history, "--older-than", bare, "--yes")
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(f"error: --older-than: '{bare}' has no unit"), line
    assert f"{bare}d" in line and "Traceback" not in result.stderr
    assert events(history) == len(AGES)


def test_a_malformed_retention_names_the_option(history: str) -> None:
    result = prune(history, "--older-than", "5parsecs")
    assert result.returncode == 2
    assert one_line(result).startswith("error: --older-than: not a duration: '5parsecs'")
    assert events(history) == len(AGES)


@pytest.mark.parametrize("retention", ["10m", "0s", "59m59s"])
def test_a_retention_under_an_hour_needs_yes_without_a_terminal(
    history: str, retention: str
) -> None:
    refused = prune(history, "--older-than", retention)
    assert refused.returncode == 2
    line = one_line(refused)
    assert "less than an hour" in line and "--yes" in line, line
    assert refused.stdout == ""
    assert events(history) == len(AGES)


def test_with_yes_a_short_retention_prunes(history: str) -> None:
    done = prune(history, "--older-than", "10m", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["events"] == len(AGES)
    assert events(history) == 0


def test_a_dry_run_of_a_short_retention_needs_no_yes(history: str) -> None:
    dry = prune(history, "--older-than", "10m", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["events"] == len(AGES)
    assert events(history) == len(AGES)


def test_a_retention_of_an_hour_or_more_prunes_without_asking(history: str) -> None:
    done = prune(history, "--older-than", "1h", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["events"] == 1  # only the two-day-old event
    assert events(history) == 1


def test_on_a_terminal_a_short_retention_says_what_goes_and_asks(history: str) -> None:
    env = {"DATABASE_URL": history}
    no = on_terminal(["prune", "--older-than", "10m"], "n\n", env)
    assert no.returncode == 1, no.output
    assert "this deletes 2 events, 0 deliveries, 0 attempts, 0 dead letters" in no.output
    assert "not pruned" in no.output
    assert events(history) == len(AGES)
    yes = on_terminal(["prune", "--older-than", "10m", "--json"], "y\n", env)
    assert yes.returncode == 0, yes.output
    assert events(history) == 0
