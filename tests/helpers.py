"""Helpers shared by the test suites."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the `webhooks` command as a user would, in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    full_env.pop("DATABASE_URL", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
