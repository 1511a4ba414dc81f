"""The commands operators reach for: publish from a file, endpoint update, test and delete,
delivery retry and resend, tenant and time filters (issue 15). Driven as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.helpers import run_cli


def env_of(db_url: str, redis_url: str | None = None, **more: str) -> dict[str, str]:
    out = {"DATABASE_URL": db_url, **more}
    if redis_url is not None:
        out["REDIS_URL"] = redis_url
    return out


def value(db_url: str, sql: str, *params: object) -> object:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


# -- publish --data @FILE / - --------------------------------------------------------------


def test_publish_reads_a_payload_beyond_the_argument_limit_from_a_file(
    db_url: str, tmp_path: Path
) -> None:
    # ~200 KiB: more than one command-line argument can carry (128 KiB on Linux).
    payload = {"blob": "x" * 200_000}
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload, indent=2))
    result = run_cli("publish", "big.event", "--data", f"@{path}", "--json", env=env_of(db_url))
    assert result.returncode == 0, result.stderr
    event_id = json.loads(result.stdout)["id"]
    stored = value(db_url, "select payload from webhooks.outbox where id = %s", event_id)
    assert stored == payload


def test_publish_reads_the_payload_from_stdin(db_url: str) -> None:
    payload = {"from": "stdin", "blob": "y" * 150_000}
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "publish", "a.b", "--data", "-"],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env={**_clean_env(), "DATABASE_URL": db_url},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    event_id = result.stdout.strip()
    assert value(db_url, "select payload from webhooks.outbox where id = %s", event_id) == payload


def test_publish_from_a_file_too_large_or_unreadable_is_one_line(
    db_url: str, tmp_path: Path
) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"blob": "z" * 3000}))
    too_large = run_cli(
        "publish",
        "a.b",
        "--data",
        f"@{big}",
        env=env_of(db_url, WEBHOOKS_MAX_PAYLOAD_BYTES="1000"),
    )
    assert too_large.returncode == 2
    assert len(too_large.stderr.strip().splitlines()) == 1, too_large.stderr
    assert "1000" in too_large.stderr
    missing = run_cli("publish", "a.b", "--data", f"@{tmp_path}/nope.json", env=env_of(db_url))
    assert missing.returncode == 2
    (line,) = missing.stderr.strip().splitlines()
    assert f"cannot read '{tmp_path}/nope.json': No such file or directory" in line
    # A negative number is JSON, not stdin.
    assert run_cli("publish", "a.b", "--data", "-1", env=env_of(db_url)).returncode == 0
    assert value(db_url, "select count(*) from webhooks.outbox") == 1


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WEBHOOKS_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
