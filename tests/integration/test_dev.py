"""`webhooks dev`: the demo shows successes, a retry and a dead letter; Ctrl-C leaves nothing;
the configured database and Redis are left alone unless `--use-configured` says otherwise."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.pipeline import Pipeline, queued_messages
from tests.receiver import Receiver


def processes_mentioning(marker: str) -> list[int]:
    """Return the pids whose environment or command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in blob:
            found.append(int(entry.name))
    return found


def demo_complete(text: str) -> bool:
    """Tell whether the demo's three outcomes are in: two successes and a dead letter."""
    return text.count("succeeded") >= 2 and "replay it with" in text


def run_dev(
    args: list[str],
    env: dict[str, str],
    out: Path,
    until: str | Callable[[str], bool],
    meanwhile: Callable[[str], None] | None = None,
) -> str:
    """Run `webhooks dev` until its output shows ``until``, then Ctrl-C it; return the output.

    ``meanwhile`` is called with the output so far before the Ctrl-C.
    """
    done = until if callable(until) else (lambda text: until in text)
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "dev", *args],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not done(out.read_text()):
                assert proc.poll() is None, out.read_text()
                time.sleep(0.2)
            assert done(out.read_text()), out.read_text()
            if meanwhile is not None:
                meanwhile(out.read_text())
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    return out.read_text()


def services_env(db_url: str, redis_url: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")},
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
    }


def test_dev_demo_runs_and_ctrl_c_stops_everything(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = services_env(db_url, redis_url)
    work = tmp_path / "work"
    opened: list[int] = []

    def open_portal(text: str) -> None:
        # The newcomer's first minute: the portal link printed at start opens the portal.
        found = re.search(r"portal +(http://\S+)", text)
        assert found, text
        deadline = time.monotonic() + 30
        while True:
            try:
                opened.append(httpx.get(found.group(1)).status_code)
                return
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the portal never answered"
                time.sleep(0.2)

    text = run_dev(
        ["--workdir", str(work)], env, tmp_path / "dev.out", "demo complete", open_portal
    )
    assert opened == [303]
    assert "succeeded" in text and "will retry" in text and "gave up" in text
    assert "replay it with" in text and text.count("demo complete") == 1
    assert "signature valid" in text and "INVALID" not in text
    assert "stopped" in text
    assert f"kept {work}" in text and (work / "pipeline.log").exists()
    # The embedded servers included; a process that is exiting may take a moment.
    deadline = time.monotonic() + 15
    while processes_mentioning(str(work)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [
        (pid, Path(f"/proc/{pid}/cmdline").read_bytes()) for pid in processes_mentioning(str(work))
    ] == []


def test_dev_without_a_workdir_leaves_no_temporary_folder(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    # Short: the embedded Postgres puts its unix socket in there (at most 107 bytes a path).
    scratch = Path(tempfile.mkdtemp(prefix="wh-", dir="/tmp"))
    env = {**services_env(db_url, redis_url), "TMPDIR": str(scratch)}
    try:
        text = run_dev([], env, tmp_path / "dev.out", "demo complete")
        # Nothing at all: the demo's folder, the embedded Redis's and Postgres's included.
        assert list(scratch.iterdir()) == []
        # Nor a warning from a library on the way (dev prints its own lines only).
        assert "Warning" not in text and "WARNING" not in text, text
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def snapshot(db_url: str) -> dict[str, list[str]]:
    """Return every row of every table of the database's webhooks schema, as text."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "select table_name from information_schema.tables"
                " where table_schema = 'webhooks' and table_type = 'BASE TABLE'"
                " order by table_name"
            )
        ]
        return {
            table: [
                row for (row,) in conn.execute(f"select t::text from webhooks.{table} t order by 1")
            ]
            for table in tables
        }


def test_dev_leaves_the_configured_database_and_redis_alone(
    pipeline: Pipeline, receiver: Receiver, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    # The user's own endpoint, with deliveries pending and queued in the user's Redis.
    pipeline.endpoint(receiver.url("/mine"))
    for i in range(3):
        pipeline.publish("user.created", {"user": i})
    relay = pipeline.start_relay(lease=60.0)
    pipeline.wait_until(
        lambda: len(queued_messages(pipeline.settings)) == 3, what="3 queued deliveries"
    )
    relay.stop()
    pipeline.relays[0][1].join(10)
    before, queued = snapshot(db_url), queued_messages(pipeline.settings)
    assert before["deliveries"] and before["endpoints"]

    env = services_env(db_url, redis_url)
    text = run_dev([], env, tmp_path / "dev.out", demo_complete)

    assert snapshot(db_url) == before
    assert queued_messages(pipeline.settings) == queued
    assert receiver.to("/mine") == []
    assert "runs on embedded servers of its own" in text


def test_dev_use_configured_says_what_it_writes_there(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = services_env(db_url, redis_url)
    text = run_dev(["--use-configured"], env, tmp_path / "dev.out", "watching deliveries")
    database = db_url.rsplit("/", 1)[-1]
    assert "--use-configured: the demo writes into the database" in text and database in text
    assert "3 endpoints and 3 events in tenant 'default'" in text
    rows: Any = snapshot(db_url)["endpoints"]
    assert len(rows) == 3 and all("demo: " in row for row in rows)
