"""`webhooks api` refuses to start, in one line and exit 1, when it could not serve anything.

It used to start with Postgres unreachable (each request then waited 10 s for a connection
and answered 503) and, with its port taken, to log "serving ... on :8080" before uvicorn's
own error and exit 3.
"""

from __future__ import annotations

import socket
import subprocess

from tests.daemons import free_port
from tests.helpers import run_cli


def test_webhooks_api_fails_fast_when_postgres_is_unreachable(redis_url: str) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/webhooks"
    try:
        result = run_cli(
            "api",
            "--port",
            str(free_port()),
            env={"DATABASE_URL": nowhere, "REDIS_URL": redis_url},
            timeout=30,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("`webhooks api` started with Postgres unreachable") from exc
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot connect to Postgres"), line
    assert "serving" not in result.stdout + result.stderr


def test_webhooks_api_fails_fast_when_its_port_is_taken(db_url: str, redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "api",
            "--port",
            str(port),
            env={"DATABASE_URL": db_url, "REDIS_URL": redis_url},
            timeout=30,
        )
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == f"error: cannot listen on 127.0.0.1:{port}: Address already in use", line
    assert "serving" not in result.stdout + result.stderr
