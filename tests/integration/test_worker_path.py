"""`webhooks worker` runs this package's code whatever directory it is started from."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.daemons import base_env, free_port, wait_serving


class _Started:
    """Enough of `tests.daemons.Daemon` for `wait_serving`: a process and its output."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log
        self.args = proc.args

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def test_a_worker_folder_in_the_working_directory_is_not_imported(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    # A project's own `worker` package, or another checkout of this one, where the command
    # is started: Python's `-m` would put that directory first on sys.path.
    decoy = tmp_path / "worker"
    decoy.mkdir()
    marker = tmp_path / "imported"
    (decoy / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(7)\n")
    port = free_port()
    env = base_env(DATABASE_URL=db_url, REDIS_URL=redis_url, WEBHOOKS_METRICS_PORT=str(port))
    log = tmp_path / "worker.log"
    command = Path(sys.executable).parent / "webhooks"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(command), "worker", "--processes", "1", "--threads", "1"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_serving(_Started(proc, log), port)  # type: ignore[arg-type]
        time.sleep(0.5)
        assert not marker.exists(), log.read_text(errors="replace")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
