"""Servers the test suite starts for itself, and the check that it touched no other.

The suite flushes Redis databases and restarts a RabbitMQ node; it may do that only to
servers it started. `RedisServer` is a redis-server of its own on a free loopback port,
without persistence; `RabbitNode` is a RabbitMQ node of its own (its own node name, ports,
data and log directories, no plugins), which the fault tests stop and start. `Watch`
notices when the suite reaches a Redis it did not start or stops the machine's RabbitMQ.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis


def free_port() -> int:
    """Return a TCP port nothing listens on at the moment, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environ() -> dict[str, str]:
    """Return this process's environment without any setting of the product."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WEBHOOKS_", "PROMETHEUS_", "dramatiq_", "RABBITMQ_"))
        and k not in ("DATABASE_URL", "REDIS_URL", "PGAPPNAME")
    }


class RedisServer:
    """A redis-server of the caller's own on a free loopback port, without persistence."""

    def __init__(self, workdir: Path, binary: str = "redis-server") -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url(), socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> None:
        argv = [
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            *("--dir", str(self.workdir)),
        ]
        log = self.workdir / "redis.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                env=clean_environ(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError), self.client() as client:
                if client.ping():
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"redis-server did not start: {log.read_text(errors='replace')}")

    def kill(self) -> None:
        """SIGKILL the server: everything it held is gone (no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def flush(self) -> None:
        with self.client() as client:
            client.flushall()

    def stop(self) -> None:
        self.kill()


def rabbitmq_scripts() -> Path | None:
    """Return the directory of RabbitMQ's own scripts (`rabbitmq-server`, `rabbitmqctl`).

    Debian's /usr/sbin ones switch to the rabbitmq user, whose home holds the machine
    node's Erlang cookie; the scripts they wrap run as the caller, with our own cookie.
    """
    for candidate in (Path("/usr/lib/rabbitmq/bin"),):
        if (candidate / "rabbitmq-server").exists():
            return candidate
    found = shutil.which("rabbitmq-server")
    return Path(found).resolve().parent if found else None


class NodeDidNotStart(Exception):
    """Raised when a private RabbitMQ node cannot start on this machine."""


@dataclass
class RabbitNode:
    """A RabbitMQ node of the suite's own: its name, ports, cookie, data, no plugins.

    Nothing is shared with the machine's node except the Erlang port mapper (epmd), where
    each node only registers its name. `stop_app` / `start_app` restart this node alone.
    """

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="webhooks-rmq-")))
    name: str = field(default_factory=lambda: f"webhooks_test_{os.getpid()}@localhost")
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    started_in: float = 0.0
    scripts: Path | None = field(default_factory=rabbitmq_scripts)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def env(self) -> dict[str, str]:
        root = self.root
        return {
            **clean_environ(),
            # The Erlang cookie lives in $HOME: a fresh one, readable only here.
            "HOME": str(root),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_PID_FILE": str(root / "node.pid"),
            # Neither the machine's rabbitmq-env.conf (its node name) nor its rabbitmq.conf
            # (its listener), nor its plugins (the management plugin's port 15672).
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
        }

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `rabbitmqctl -n <this node> ...`; raise on failure."""
        assert self.scripts is not None
        return subprocess.run(
            [str(self.scripts / "rabbitmqctl"), "-q", "-n", self.name, *args],
            env=self.env(),
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, timeout: float = 180) -> None:
        """Start the node and wait until it accepts connections; time it (`started_in`)."""
        if self.scripts is None:
            raise NodeDidNotStart("rabbitmq-server is not installed")
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        began = time.monotonic()
        done = subprocess.run(
            [str(self.scripts / "rabbitmq-server"), "-detached"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise NodeDidNotStart(f"rabbitmq-server -detached: {done.stderr or done.stdout}")
        # await_startup fails at once while the node has not registered its name yet.
        while True:
            try:
                self.ctl("await_startup", "--timeout", "60", timeout=90)
                break
            except subprocess.CalledProcessError as exc:
                if time.monotonic() - began > timeout:
                    self.stop()
                    raise NodeDidNotStart(f"{exc.stderr}\n{self.log_tail()}") from exc
                time.sleep(0.5)
        self.started_in = time.monotonic() - began

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup")

    def stop(self) -> None:
        """Stop the node, kill it if it will not stop, and remove its files."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.ctl("stop", timeout=60)
        pid_file = self.root / "node.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        logs = sorted((self.root / "log").glob("*.log"))
        if not logs:
            return ""
        return "\n".join(logs[0].read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def rabbit_node() -> Iterator[RabbitNode]:
    """Start a private RabbitMQ node; stop it and remove its files at the end."""
    node = RabbitNode()
    try:
        node.start()
        yield node
    finally:
        node.stop()


# -- the rule: the suite touches only what it started --------------------------------------

#: The machine's services, which other work may be using.
MACHINE_REDIS = frozenset({("127.0.0.1", 6379), ("localhost", 6379)})
MACHINE_RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/%2F"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Watch:
    """Notice whether this process reached a Redis it was not given leave to use, or whether
    the machine's RabbitMQ node stopped meanwhile.

    Redis: every connection this process makes is recorded (host, port); connecting to the
    machine's Redis (127.0.0.1:6379) unless it is `allowed` is a breach. RabbitMQ: an idle
    connection is held to the machine's node; stopping the node or its application closes
    every connection, so one found closed at the end means the node was stopped.
    """

    redis_allowed: bool = False
    redis: frozenset[tuple[str, int]] = MACHINE_REDIS
    rabbitmq_url: str = MACHINE_RABBITMQ
    reached: list[tuple[str, int]] = field(default_factory=list)
    _sentinel: Any = None
    _undo: Callable[[], None] | None = None

    def start(self) -> None:
        from redis.connection import Connection

        original = Connection._connect
        reached = self.reached

        def recording(conn: Connection) -> Any:
            sock = original(conn)
            reached.append((str(conn.host), int(conn.port)))
            return sock

        Connection._connect = recording  # type: ignore[method-assign]

        def undo() -> None:
            Connection._connect = original  # type: ignore[method-assign]

        self._undo = undo
        where = urlsplit(self.rabbitmq_url)
        if _port_open(where.hostname or "127.0.0.1", where.port or 5672):
            import pika

            params = pika.URLParameters(self.rabbitmq_url + "?heartbeat=0")
            with contextlib.suppress(Exception):  # no access to "/": nothing to watch
                self._sentinel = pika.BlockingConnection(params)

    def breaches(self) -> list[str]:
        """Return what the suite did to services it did not start; stop watching."""
        if self._undo is not None:
            self._undo()
        found = []
        shared = sorted({f"{h}:{p}" for h, p in self.reached if (h, p) in self.redis})
        if shared and not self.redis_allowed:
            found.append(f"the suite connected to a Redis it did not start: {', '.join(shared)}")
        if self._sentinel is not None:
            try:
                self._sentinel.process_data_events(0)
                self._sentinel.channel().close()
            except Exception as exc:
                found.append(f"a RabbitMQ node it did not start was stopped meanwhile ({exc!r})")
            with contextlib.suppress(Exception):
                self._sentinel.close()
        return found
