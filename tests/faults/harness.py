"""Real processes for the fault tests: the daemons, the broker's controls, the checks.

Every process starts in a session (process group) of its own, so one signal reaches its
whole tree (`webhooks worker` runs Dramatiq, which forks worker processes and a metrics
process), and the fixture that started it stops it, also when the test fails. Only loopback
addresses are used. The brokers that get flushed, killed or restarted are the test's own
redis-server and the session's own RabbitMQ node (`tests.services`), never the machine's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import psycopg
from psycopg.rows import dict_row

from producers import Event, publish_many
from tests.services import RabbitNode, RedisServer, clean_environ, free_port
from worker.ops.endpoints import Endpoints
from worker.settings import parse_networks
from worker.store.vault import Vault

__all__ = ["RedisServer", "clean_environ", "free_port"]

REPO = Path(__file__).resolve().parents[2]
LOOPBACK_NETWORKS = "127.0.0.0/8"


class Proc:
    """A child process in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self.argv = argv
        #: Where the daemon serves /metrics (set by `Cluster`).
        self.metrics_port = 0
        with log.open("ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} start {' '.join(argv)}\n".encode())
            self.popen = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def descendants(self) -> list[psutil.Process]:
        """Return the live processes the child started (Dramatiq's worker processes)."""
        try:
            children: list[psutil.Process] = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return children

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crash or an OOM kill would."""
        group = self.descendants()
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        # Children that had left the group (none should) are killed too.
        for child in group:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(group, timeout=10)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``grace`` seconds."""
        group = self.descendants()
        if self.alive():
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        for child in group:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(group, timeout=10)

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class BlackHole:
    """Accept TCP connections and never answer: every call to a Redis here hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.connections: list[socket.socket] = []
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def url(self, scheme: str = "redis") -> str:
        if scheme == "amqp":
            return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        return f"redis://127.0.0.1:{self.port}/0"

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = self.listener.accept()
                conn.setblocking(False)
                self.connections.append(conn)
            for conn in self.connections:
                # Read (so the client's writes complete) and never write back.
                with contextlib.suppress(BlockingIOError, OSError):
                    self.received += len(conn.recv(65536))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.connections:
            conn.close()
        self.listener.close()


class Cluster:
    """The product's daemons as real processes against one database and one Redis."""

    def __init__(
        self,
        db_url: str,
        redis_url: str,
        workdir: Path,
        *,
        broker_url: str | None = None,
        rabbitmq_queue_type: str = "classic",
        schedule: str = "0s,1s,2s",
        request_timeout: str = "5s",
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.db_url = db_url
        self.redis_url = redis_url
        #: WEBHOOKS_BROKER_URL; on RabbitMQ, REDIS_URL names a port nothing listens on, so
        #: a test passes only if the deployment needs no Redis at all.
        self.broker_url = broker_url or redis_url
        if not self.broker_url.startswith(("redis://", "rediss://", "unix://")):
            self.redis_url = "redis://127.0.0.1:1/0"
        self.workdir = workdir
        self.settings_env = {
            "DATABASE_URL": db_url,
            "REDIS_URL": self.redis_url,
            "WEBHOOKS_BROKER_URL": self.broker_url,
            "WEBHOOKS_RABBITMQ_QUEUE_TYPE": rabbitmq_queue_type,
            "WEBHOOKS_ALLOWED_NETWORKS": LOOPBACK_NETWORKS,
            "WEBHOOKS_RETRY_SCHEDULE": schedule,
            "WEBHOOKS_REQUEST_TIMEOUT": request_timeout,
            "WEBHOOKS_LOG_FORMAT": "text",
            **(extra_env or {}),
        }
        self.procs: list[Proc] = []
        self.conn = psycopg.connect(db_url, autocommit=True, row_factory=dict_row)
        self.registry = Endpoints(
            self.conn, Vault(None), allowed_networks=parse_networks(LOOPBACK_NETWORKS)
        )
        self._count = 0

    # -- processes ------------------------------------------------------------------------

    def env(self, **overrides: str) -> dict[str, str]:
        env = clean_environ()
        env.update(self.settings_env)
        env["PYTHONUNBUFFERED"] = "1"
        env["WEBHOOKS_METRICS_PORT"] = str(free_port())
        env["WEBHOOKS_RELAY_METRICS_PORT"] = str(free_port())
        env.update(overrides)
        return env

    def _start(self, kind: str, args: list[str], env: dict[str, str]) -> Proc:
        self._count += 1
        name = f"{kind}{self._count}"
        proc = Proc(
            name,
            [sys.executable, "-m", "worker.cli", *args],
            env,
            self.workdir / f"{name}.log",
        )
        proc.metrics_port = int(
            env["WEBHOOKS_RELAY_METRICS_PORT" if kind == "relay" else "WEBHOOKS_METRICS_PORT"]
        )
        self.procs.append(proc)
        return proc

    def start_relay(
        self,
        *,
        lease: str = "2s",
        redis_url: str | None = None,
        broker_url: str | None = None,
        batch_size: int = 1000,
    ) -> Proc:
        env = self.env(PGAPPNAME="fault-relay")
        if redis_url is not None:
            env["REDIS_URL"] = redis_url
        if broker_url is not None:
            env["WEBHOOKS_BROKER_URL"] = broker_url
        return self._start(
            "relay", ["relay", "--lease", lease, "--batch-size", str(batch_size)], env
        )

    def start_worker(
        self, *, threads: int = 4, processes: int = 1, concurrency: int | None = None
    ) -> Proc:
        # Each pool sums its own processes' metric files (SIGKILL leaves them behind).
        metrics_dir = self.workdir / f"metrics-{self._count + 1}"
        env = self.env(PGAPPNAME="fault-worker", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        args = ["worker", "--processes", str(processes), "--threads", str(threads)]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        return self._start("worker", args, env)

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop(grace=3)

    def close(self) -> None:
        try:
            self.stop_all()
        finally:
            self.conn.close()

    def logs(self, lines: int = 25) -> str:
        return "\n".join(f"== {p.name} ({p.log})\n{p.tail(lines)}" for p in self.procs)

    # -- data -----------------------------------------------------------------------------

    def endpoint(self, url: str, **kwargs: Any) -> tuple[str, str]:
        ep, secret = self.registry.add(url, **kwargs)
        return ep.id, secret

    def publish(self, events: Iterable[Event]) -> list[str]:
        with psycopg.connect(self.db_url) as conn:
            ids = publish_many(conn, list(events))
            conn.commit()
        return ids

    def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        return self.conn.execute(sql, params).fetchall()

    def value(self, sql: str, *params: Any) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return next(iter(row.values()))

    def unfinished(self) -> int:
        """Count events not yet relayed plus deliveries not yet terminal."""
        return int(
            self.value(
                "select (select count(*) from webhooks.outbox where relayed_at is null)"
                " + (select count(*) from webhooks.deliveries where status = 'pending')"
            )
        )

    # -- waiting and checking -------------------------------------------------------------

    def wait_until(
        self, check: Callable[[], bool], timeout: float, what: str, poll: float = 0.1
    ) -> float:
        """Wait for ``check``; return the seconds it took, or fail with the daemons' logs."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if check():
                return time.monotonic() - started
            time.sleep(poll)
        raise AssertionError(
            f"timed out after {timeout:g}s waiting for {what}\n{self.status()}\n{self.logs()}"
        )

    def settle(self, timeout: float) -> float:
        """Wait until every event is relayed and every delivery terminal; return seconds."""
        return self.wait_until(lambda: self.unfinished() == 0, timeout, "every delivery to finish")

    def status(self) -> str:
        return json.dumps(
            self.rows(
                "select status, count(*) as n, sum(attempts) as attempts,"
                " count(*) filter (where message_id is not null) as with_message,"
                " count(*) filter (where locked_until > now()) as locked,"
                " min(next_attempt_at)::text as next_min"
                " from webhooks.deliveries group by status"
            ),
            default=str,
        )

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = clean_environ()
        env.update(
            {
                "DATABASE_URL": self.db_url,
                "REDIS_URL": self.redis_url,
                "WEBHOOKS_BROKER_URL": self.broker_url,
                "WEBHOOKS_RABBITMQ_QUEUE_TYPE": self.settings_env["WEBHOOKS_RABBITMQ_QUEUE_TYPE"],
            }
        )
        return subprocess.run(
            [sys.executable, "-m", "worker.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=timeout,
        )

    def check(self) -> None:
        """Assert that `webhooks check` passes (exit status 0)."""
        result = self.cli("check", "--json")
        assert result.returncode == 0, f"webhooks check failed:\n{result.stdout}{result.stderr}"
        assert json.loads(result.stdout)["ok"] is True

    def assert_attempts_consistent(self) -> None:
        """Assert every delivery's attempt count equals its rows, numbered 1..n."""
        bad = self.rows(
            "select d.id, d.attempts, count(a.id) as rows,"
            " coalesce(max(a.number), 0) as top, count(distinct a.number) as numbers"
            " from webhooks.deliveries d left join webhooks.attempts a on a.delivery_id = d.id"
            " group by d.id"
            " having d.attempts <> count(a.id) or coalesce(max(a.number), 0) <> d.attempts"
            "     or count(distinct a.number) <> count(a.id)"
            " limit 10"
        )
        assert bad == [], f"attempt history inconsistent: {bad}"


def metric(port: int, name: str) -> float:
    """Return the sum of one metric's samples on a /metrics endpoint of 127.0.0.1."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key = line.split(" ", 1)[0].split("{", 1)[0]
            if key == name:
                total += float(line.rsplit(" ", 1)[1])
    return total


def peak_rss_mib(pid: int) -> float:
    """Return the peak resident memory (VmHWM) of one process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


class BrokerControl:
    """Lose, drop or restart the cluster's broker, whichever it is (one test body for both).

    Both are the test session's own: the test's redis-server, or the session's RabbitMQ
    node (`tests.services.RabbitNode`), whose application `restart` stops and starts.
    """

    def __init__(
        self, cluster: Cluster, redis_server: RedisServer, node: RabbitNode | None = None
    ) -> None:
        self.cluster = cluster
        self.redis_server = redis_server
        self.rabbit = cluster.broker_url.startswith(("amqp://", "amqps://"))
        if self.rabbit:
            assert node is not None and cluster.broker_url == node.url, "not our own node"
        self.node = node

    def depth(self) -> int:
        from worker.queue import BrokerError, from_url

        queue = from_url(
            self.cluster.broker_url,
            "webhooks",
            self.cluster.settings_env["WEBHOOKS_RABBITMQ_QUEUE_TYPE"],
        )
        try:
            return queue.depth()
        except BrokerError:
            return -1
        finally:
            queue.close()

    def lose_everything(self) -> None:
        """Flush Redis / purge the RabbitMQ queue: every queued message is gone."""
        if not self.rabbit:
            self.redis_server.flush()
            return
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.cluster.broker_url))
        try:
            connection.channel().queue_purge("webhooks")
        finally:
            connection.close()

    def drop_connections(self) -> None:
        """Close every client connection from the server's side."""
        if not self.rabbit:
            with self.redis_server.client() as client:
                client.client_kill_filter(_type="normal", skipme=True)
            return
        assert self.node is not None
        self.node.ctl("close_all_connections", "-p", "/", "fault test")

    def stop(self) -> None:
        """Kill Redis (it keeps nothing) / stop the RabbitMQ application."""
        if self.rabbit:
            assert self.node is not None
            self.node.stop_app()
        else:
            self.redis_server.kill()

    def start(self) -> None:
        if self.rabbit:
            assert self.node is not None
            self.node.start_app()
        else:
            self.redis_server.start()
