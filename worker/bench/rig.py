"""Set up and tear down what a run measures: database, Redis database, receiver, commands."""

from __future__ import annotations

import base64
import contextlib
import os
import platform
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo

from worker.bench.options import (
    CLAIM_KEY,
    LOCAL_POSTGRES,
    LOOPBACK,
    QUEUE,
    REDIS_DBS,
    RETRY_SCHEDULE,
    BenchError,
    Options,
)
from worker.bench.system import Daemon, _free_port
from worker.bench.tally import ReceiverProcess
from worker.dev.embedded import EmbeddedServices, port_open
from worker.ops.endpoints import Endpoints
from worker.queue import Queue
from worker.settings import parse_networks
from worker.store import bench, migrate
from worker.store.vault import Vault


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        return f"unix://{parts.path}?{urlencode(query)}"  # urlunsplit would drop the //
    return urlunsplit(parts._replace(path=f"/{db}"))


@dataclass
class Services:
    """Where the bench's Postgres database and Redis database live."""

    admin_url: str
    redis_base: str
    source: str
    embedded: EmbeddedServices | None = None


def find_services(database_url: str | None, redis_url: str | None) -> Services:
    """Use the configured Postgres, else the local default port, else an embedded one
    (the bench creates and drops a database of its own there). Use the configured Redis
    (where the bench claims a database it proves empty), else a Redis of its own: a Redis
    found listening is never used unasked, since the bench flushes its database."""
    embedded: EmbeddedServices | None = None
    sources = []
    if database_url:
        admin, sources = database_url, ["DATABASE_URL"]
    elif port_open("127.0.0.1", 5432):
        admin, sources = LOCAL_POSTGRES, ["local postgres"]
    else:
        embedded = EmbeddedServices()
        admin, sources = embedded.postgres_url(), ["embedded postgres"]
    if redis_url:
        base = redis_url
        sources.append("REDIS_URL")
    else:
        embedded = embedded or EmbeddedServices()
        base = embedded.own_redis_url()
        sources.append("own redis-server" if base.startswith("redis://") else "embedded redis")
    return Services(admin, base, ", ".join(sources), embedded)


Records = tuple[list[float], list[bytes], list[bytes], list[int]]


@dataclass
class Rig:
    """What one run sets up and must tear down, whatever happens: `setup`, then `close`."""

    opts: Options
    say: Callable[[str], None]
    services: Services | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="webhooks-bench-")))
    db_name: str = field(default_factory=lambda: f"webhooks_bench_{secrets.token_hex(4)}")
    db_url: str = ""
    redis_url: str = ""
    redis_db: int | None = None
    receiver: ReceiverProcess | None = None
    daemons: list[Daemon] = field(default_factory=list)
    load_pids: list[int] = field(default_factory=list)
    endpoint_paths: dict[str, str] = field(default_factory=dict)  # endpoint id -> path
    ceiling_secret: str = ""
    results: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    failed: bool = False
    _conn: psycopg.Connection[dict[str, Any]] | None = None
    _redis: redis.Redis | None = None
    _queue: Queue | None = None
    _claim: str = field(default_factory=lambda: secrets.token_hex(8))
    _db_created: bool = False
    _stop_refresh: threading.Event = field(default_factory=threading.Event)

    # -- set up and tear down ---------------------------------------------------------------

    @property
    def conn(self) -> psycopg.Connection[dict[str, Any]]:
        assert self._conn is not None
        return self._conn

    @property
    def rds(self) -> redis.Redis:
        assert self._redis is not None
        return self._redis

    def setup(self) -> None:
        """Create the database, claim a Redis database, start the receiver, add endpoints."""
        self.opts.check()
        self.services = find_services(self.opts.database_url, self.opts.redis_url)
        try:
            with psycopg.connect(self.services.admin_url, autocommit=True) as admin:
                admin.execute(sql.SQL("create database {}").format(sql.Identifier(self.db_name)))
        except psycopg.Error as exc:
            raise BenchError(f"cannot create the bench database: {exc}".strip()) from exc
        self._db_created = True
        self.db_url = make_conninfo(self.services.admin_url, dbname=self.db_name)
        self._conn = psycopg.connect(self.db_url, autocommit=True)
        migrate.migrate(self.conn)
        self._claim_redis_db()
        self.receiver = ReceiverProcess(self.opts.fail_rate, self.opts.receiver_delay)
        registry = Endpoints(
            self.conn, Vault(self.opts.secret_key), allowed_networks=parse_networks(LOOPBACK)
        )
        keys: dict[str, str] = {}
        for k in range(self.opts.endpoints):
            ep, secret = registry.add(
                self.receiver.url(f"/e/{k}"),
                description="bench",
                filter=self.opts.filter,
                ordered=self.opts.ordering_keys is not None,
            )
            self.endpoint_paths[ep.id] = f"/e/{k}"
            keys[f"/e/{k}"] = secret
        self.ceiling_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        keys.update({f"/c/{k}": self.ceiling_secret for k in range(self.opts.endpoints)})
        self.receiver.keys(keys)
        self.results["machine"] = self._machine()
        self.results["database"] = self.db_name

    def _claim_redis_db(self) -> None:
        assert self.services is not None
        candidates = [self.opts.redis_db] if self.opts.redis_db is not None else REDIS_DBS
        for db in candidates:
            url = _with_redis_db(self.services.redis_base, db)
            client = redis.Redis.from_url(url, socket_timeout=10)
            try:
                # Claimed atomically, and empty but for the claim: nobody else's data is in
                # it, so flushing it at the end removes only the bench's.
                if not client.set(CLAIM_KEY, self._claim, nx=True, ex=120):
                    client.close()
                    continue
                if client.dbsize() > 1:
                    client.delete(CLAIM_KEY)  # someone else's data: not ours to touch
                    client.close()
                    continue
            except redis.ResponseError:  # no such database number on this server
                client.close()
                continue
            except redis.RedisError as exc:
                raise BenchError(f"cannot use Redis at {url}: {exc}") from exc
            self._redis, self.redis_url, self.redis_db = client, url, db
            threading.Thread(target=self._refresh_claim, daemon=True).start()
            return
        if self.opts.redis_db is not None:
            raise BenchError(
                f"Redis database {self.opts.redis_db} is not empty (or being benched): the"
                " bench flushes its database at the end, so it takes only an empty one"
            )
        raise BenchError("no empty Redis database to use: pass --redis-db N")

    def _refresh_claim(self) -> None:
        while not self._stop_refresh.wait(30):
            with contextlib.suppress(redis.RedisError):
                self.rds.set(CLAIM_KEY, self._claim, ex=120)

    def close(self) -> None:
        """Stop every process started and remove the database and Redis data; never raises."""
        for daemon in self.daemons:
            with contextlib.suppress(Exception):
                daemon.stop()
        self.daemons.clear()
        if self.receiver is not None:
            with contextlib.suppress(Exception):
                self.receiver.stop()
        self._stop_refresh.set()
        if self._queue is not None:
            self._queue.close()
        if self.rabbit:
            with contextlib.suppress(Exception):
                self._purge_rabbit()
        if self._redis is not None:
            with contextlib.suppress(redis.RedisError):
                if self._redis.get(CLAIM_KEY) == self._claim.encode():
                    self._redis.flushdb()
            self._redis.close()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        if self._db_created and self.services is not None:
            try:
                with psycopg.connect(self.services.admin_url, autocommit=True) as admin:
                    admin.execute(
                        sql.SQL("drop database if exists {} with (force)").format(
                            sql.Identifier(self.db_name)
                        )
                    )
            except psycopg.Error as exc:
                self.say(f"warning: could not drop database {self.db_name}: {exc}")
        if self.services is not None and self.services.embedded is not None:
            with contextlib.suppress(Exception):
                self.services.embedded.stop()
            shutil.rmtree(self.services.embedded.root, ignore_errors=True)
        if self.problems or self.failed:
            self.say(f"logs of the relay and workers kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _machine(self) -> dict[str, Any]:
        assert self.services is not None
        model = ""
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        pg = bench.server(self.conn)
        info = self.rds.info("server")
        return {
            "cpus": os.cpu_count(),
            "cpu_model": model,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "postgres": pg.v,
            "postgres_synchronous_commit": pg.sc,
            "postgres_fsync": pg.f,
            "redis": info.get("redis_version"),
            "services": self.services.source,
            "redis_db": self.redis_db,
            "broker": self.broker_name,
            "secrets_encrypted": self.opts.secret_key is not None,
        }

    def env(self) -> dict[str, str]:
        """Return the environment of the relay and worker commands."""
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.db_url,
                "REDIS_URL": self.redis_url,
                "WEBHOOKS_BROKER_URL": self.opts.broker_url or self.redis_url,
                "WEBHOOKS_RABBITMQ_QUEUE_TYPE": self.opts.rabbitmq_queue_type,
                "WEBHOOKS_ALLOWED_NETWORKS": LOOPBACK,
                "WEBHOOKS_RETRY_SCHEDULE": RETRY_SCHEDULE,
                "WEBHOOKS_METRICS_PORT": str(_free_port()),
                "WEBHOOKS_RELAY_METRICS_PORT": str(_free_port()),
            }
        )
        return env

    def start(self, name: str, *args: str) -> Daemon:
        """Start a `webhooks` command; stopped by `close` whatever happens."""
        daemon = Daemon.start(name, list(args), self.env(), self.workdir)
        self.daemons.append(daemon)
        return daemon

    def stop(self, daemon: Daemon) -> None:
        """Stop one command started by `start`."""
        daemon.stop()
        self.daemons.remove(daemon)

    def roles(self) -> dict[int, str]:
        """Map the pids of the processes this bench started to what they are."""
        out = {os.getpid(): "bench"}
        if self.receiver is not None and self.receiver.process.pid is not None:
            out[self.receiver.process.pid] = "receiver"
        out.update({pid: "load" for pid in self.load_pids})
        for daemon in self.daemons:
            role = daemon.name.split("-")[0]
            out.update({pid: role for pid in daemon.tree()})
            if role == "worker":
                # Dramatiq's main process: it forwards the worker processes' log lines.
                out[daemon.process.pid] = "worker-main"
        return out

    @property
    def rabbit(self) -> bool:
        """Tell whether the relay and workers use RabbitMQ (`Options.broker_url`)."""
        return bool(self.opts.broker_url)

    @property
    def broker_name(self) -> str:
        """Name the broker: ``redis``, ``rabbitmq`` or ``rabbitmq-quorum``."""
        if not self.rabbit:
            return "redis"
        return "rabbitmq-quorum" if self.opts.rabbitmq_queue_type == "quorum" else "rabbitmq"

    def _purge_rabbit(self) -> None:
        import pika
        import pika.exceptions

        from worker.queue import rabbitmq

        assert self.opts.broker_url is not None
        arguments = rabbitmq.queue_arguments(QUEUE, self.opts.rabbitmq_queue_type)
        connection = pika.BlockingConnection(pika.URLParameters(self.opts.broker_url))
        try:
            # Purged, not deleted: the workers' consumers stay subscribed to it.
            channel = connection.channel()
            try:
                channel.queue_declare(queue=QUEUE, durable=True, arguments=arguments)
            except pika.exceptions.ChannelClosedByBroker:
                # A queue of the other type, left by an earlier run (no worker is running yet
                # when it differs): deleted with the queues Dramatiq declares beside it.
                channel = connection.channel()
                for name in (QUEUE, f"{QUEUE}.DQ", f"{QUEUE}.XQ"):
                    channel.queue_delete(queue=name)
                channel.queue_declare(queue=QUEUE, durable=True, arguments=arguments)
            channel.queue_purge(QUEUE)
        finally:
            connection.close()
