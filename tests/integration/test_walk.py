"""Every command, with Postgres down, Redis down or the schema missing, answers in one line.

A command that needs what is missing says so on one stderr line with a non-zero status;
one that needs nothing missing succeeds. The daemons retry through an outage instead of
exiting (no traceback meanwhile), and refuse a missing schema in one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemons import base_env, free_port
from tests.helpers import run_cli

KEY = "walk-key-" + "0123456789" * 4
UNKNOWN = "01a237be-cf98-7347-a753-c3f768cc931e"
MIGRATE_FIRST = "error: the webhooks schema is missing or behind: run `webhooks migrate`"

COMMANDS: list[list[str]] = [
    ["migrate", "--status"],
    ["endpoint", "add", "https://hooks.example.com/in"],
    ["endpoint", "list"],
    ["endpoint", "show", UNKNOWN],
    ["endpoint", "disable", UNKNOWN],
    ["endpoint", "enable", UNKNOWN],
    ["endpoint", "rotate-secret", UNKNOWN],
    ["endpoint", "delete", UNKNOWN],
    ["endpoint", "reencrypt"],
    ["publish", "invoice.paid", "--data", "{}"],
    ["deliveries", "list"],
    ["deliveries", "show", "1"],
    ["dlq", "list"],
    ["dlq", "show", "1"],
    ["dlq", "replay", "--id", "1"],
    ["dlq", "replay", "--all"],
    ["status"],
    ["prune", "--older-than", "30d"],
    ["check"],
    ["api-key", "create", "--name", "walk", "--admin"],
    ["api-key", "list"],
    ["migrate"],
]

#: With Redis down, what fails does so for its own reason (an unknown id), not for Redis.
UNKNOWN_ID = {"show", "disable", "enable", "rotate-secret", "delete"}

SITUATIONS = ["postgres down", "redis down", "schema missing"]


def closed_port() -> int:
    return free_port()


def environment(situation: str, db_url: str, empty_db_url: str, redis_url: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "WEBHOOKS_SECRET_KEY": KEY,
        "WEBHOOKS_METRICS_PORT": str(free_port()),
        "WEBHOOKS_RELAY_METRICS_PORT": str(free_port()),
    }
    if situation == "postgres down":
        env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{closed_port()}/app"
    elif situation == "redis down":
        env["REDIS_URL"] = f"redis://127.0.0.1:{closed_port()}/0"
    else:
        env["DATABASE_URL"] = empty_db_url
    return env


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("situation", SITUATIONS)
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_each_command_answers_in_one_line(
    situation: str, command: list[str], db_url: str, empty_db_url: str, redis_url: str
) -> None:
    done = run_cli(*command, env=environment(situation, db_url, empty_db_url, redis_url))
    if situation == "postgres down":
        assert done.returncode == 1, done.stderr
        assert one_line(done.stderr).startswith("error: cannot connect to Postgres: ")
    elif situation == "schema missing":
        if command[0] == "migrate":
            assert done.returncode == 0, done.stderr
            assert "Traceback" not in done.stderr
        else:
            assert done.returncode == 1, done.stderr
            assert one_line(done.stderr) == MIGRATE_FIRST
    elif len(command) > 1 and command[1] in UNKNOWN_ID and command[0] == "endpoint":
        assert done.returncode == 1, done.stderr
        assert one_line(done.stderr) == f"error: no endpoint with id {UNKNOWN}"
    elif command[:2] in (["deliveries", "show"], ["dlq", "show"], ["dlq", "replay"]):
        if command[-1] == "--all":
            assert done.returncode == 0, done.stderr
        else:
            assert done.returncode == 1, done.stderr
            assert one_line(done.stderr).startswith("error: ")
            assert "Redis" not in done.stderr  # refused for the id, before any enqueue
    else:
        # Nothing here needs Redis (status reports it unreachable): each succeeds.
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        if command == ["status"]:
            assert "unknown (broker unreachable)" in done.stdout


@pytest.mark.parametrize("situation", ["postgres down", "redis down"])
@pytest.mark.parametrize("command", [["relay"], ["worker", "--processes", "1", "--threads", "1"]])
def test_the_daemons_wait_out_an_outage_without_a_traceback(
    situation: str,
    command: list[str],
    db_url: str,
    empty_db_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    env = base_env(**environment(situation, db_url, empty_db_url, redis_url))
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=4)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    else:
        pytest.fail(f"{command} exited ({proc.returncode}) instead of retrying:\n{err}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert "unavailable" in err or "error connecting" in err or "connection error" in err, err
