"""`webhooks dev`: the demo shows successes, a retry and a dead letter; Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


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


def run_dev(
    args: list[str],
    env: dict[str, str],
    out: Path,
    until: str,
    meanwhile: Callable[[str], None] | None = None,
) -> str:
    """Run `webhooks dev` until its output shows ``until``, then Ctrl-C it; return the output.

    ``meanwhile`` is called with the output so far before the Ctrl-C.
    """
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "dev", *args],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and until not in out.read_text():
                assert proc.poll() is None, out.read_text()
                time.sleep(0.2)
            assert until in out.read_text(), out.read_text()
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
        ["--workdir", str(work)], env, tmp_path / "dev.out", "replay it with", open_portal
    )
    assert opened == [303]
    assert "succeeded" in text and "will retry" in text and "gave up" in text
    assert "signature valid" in text and "INVALID" not in text
    assert "stopped" in text
    assert f"kept {work}" in text and (work / "pipeline.log").exists()
    db_name = db_url.rsplit("/", 1)[-1]
    time.sleep(0.5)
    assert processes_mentioning(db_name) == []


def test_dev_without_a_workdir_leaves_no_temporary_folder(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**services_env(db_url, redis_url), "TMPDIR": str(scratch)}
    run_dev([], env, tmp_path / "dev.out", "relay and worker started")
    assert list(scratch.glob("webhooks-dev-*")) == []
