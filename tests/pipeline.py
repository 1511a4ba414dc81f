"""Run the real relay and Dramatiq workers in-process against real Postgres and Redis."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq
import psycopg
from psycopg.rows import dict_row

from producers import publish
from worker.app import App
from worker.engine.actors import build_broker, build_engine, queue_prefetch, register
from worker.engine.engine import Engine
from worker.ops.endpoints import Endpoints
from worker.queue import Queue, from_url
from worker.relay import daemon
from worker.settings import RabbitQueueType, Settings
from worker.store import queries
from worker.store.vault import Vault

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@dataclasses.dataclass
class RelayConfig:
    """A relay as the tests describe it: two URLs, and whatever they tune (None: as deployed)."""

    database_url: str
    redis_url: str
    queue: str = Settings.queue_name
    batch_size: int | None = None
    lease: float | None = None
    recheck: float | None = None
    poll_interval: float | None = None
    max_age: float | None = None
    operations_tenant: str | None = None
    announce_interval: float | None = None
    sweep_interval: float | None = None
    broker_url: str | None = None
    rabbitmq_queue_type: RabbitQueueType = "classic"

    def settings(self) -> Settings:
        return Settings(
            database_url=self.database_url,
            redis_url=self.redis_url,
            broker_url=self.broker_url or "",
            rabbitmq_queue_type=self.rabbitmq_queue_type,
            queue_name=self.queue,
        )

    def overrides(self) -> dict[str, Any]:
        """Return the fields of `worker.relay.daemon.RelayConfig` this test sets."""
        skip = {"database_url", "redis_url", "broker_url", "rabbitmq_queue_type"}
        return {
            f.name: value
            for f in dataclasses.fields(self)
            if f.name not in skip and (value := getattr(self, f.name)) is not None
        }


class Relay(daemon.Relay):
    """The relay `webhooks relay` runs, built by an App from a test's `RelayConfig`."""

    def __init__(self, config: RelayConfig) -> None:
        app = App(config.settings())
        built = dataclasses.replace(daemon.RelayConfig.of(app.settings), **config.overrides())
        super().__init__(built, app.open, app.queue())


class Pipeline:
    """The product's moving parts wired for one test; `stop` ends them all."""

    def __init__(
        self, db_url: str, redis_url: str, broker_url: str | None = None, **overrides: Any
    ) -> None:
        base = Settings(
            database_url=db_url,
            redis_url=redis_url,
            broker_url=broker_url or redis_url,
            retry_schedule=(0, 0.2, 0.4),
            allowed_networks=LOOPBACK,
            request_timeout=3.0,
        )
        self.settings = dataclasses.replace(base, **overrides)
        self.conn = psycopg.connect(db_url, autocommit=True, row_factory=dict_row)
        # The test receivers listen on loopback: endpoints on it are registered even when a
        # test narrows the workers' own allowed networks to see them blocked.
        self.registry = Endpoints(
            self.conn, Vault(self.settings.secret_key), allowed_networks=LOOPBACK
        )
        self.relays: list[tuple[Relay, threading.Thread]] = []
        self.workers: list[dramatiq.Worker] = []
        self.engines: list[Any] = []
        #: `worker.observe.tracing.Tracing` for the relays and engines started after it is set.
        self.tracing: Any = None

    def start_relay(self, lease: float = 2.0, batch_size: int = 1000) -> Relay:
        relay = Relay(
            RelayConfig(
                database_url=self.settings.require_database_url(),
                redis_url=self.settings.redis_url,
                broker_url=self.settings.broker_url,
                rabbitmq_queue_type=self.settings.rabbitmq_queue_type,
                queue=self.settings.queue_name,
                lease=lease,
                recheck=lease,
                poll_interval=0.2,
                batch_size=batch_size,
                max_age=self.settings.max_delivery_age,
                operations_tenant=self.settings.operations_tenant,
                announce_interval=0.2,
                sweep_interval=1.0,
            )
        )
        if self.tracing is not None:
            relay.on_fan_out.append(self.tracing.fanned_out)
        thread = threading.Thread(target=relay.run, daemon=True)
        thread.start()
        self.relays.append((relay, thread))
        return relay

    def start_worker(self, threads: int = 4, concurrency: int = 32) -> dramatiq.Worker:
        broker = build_broker(self.settings)
        engine = build_engine(self.settings, concurrency)
        if self.tracing is not None:
            engine.tracing = self.tracing
        self.engines.append(engine)
        register(broker, engine, self.settings)
        worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=threads)
        worker.queue_prefetch = queue_prefetch(threads, concurrency)
        worker.start()
        self.workers.append(worker)
        return worker

    def queue(self) -> Queue:
        """Return the pipeline's queue on its broker (closed by the caller)."""
        return from_url(
            self.settings.broker_url, self.settings.queue_name, self.settings.rabbitmq_queue_type
        )

    def endpoint(self, url: str, **kwargs: Any) -> tuple[str, str]:
        ep, secret = self.registry.add(url, **kwargs)
        return ep.id, secret

    def publish(self, event_type: str, payload: Any, **kwargs: Any) -> str:
        with self.conn.transaction():
            return publish(self.conn, event_type, payload, **kwargs)

    def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        return self.conn.execute(sql, params).fetchall()

    def value(self, sql: str, *params: Any) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return next(iter(row.values()))

    def wait_until(self, check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what or check}")

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every event is relayed and every delivery is terminal."""
        self.wait_until(
            lambda: (
                self.value(
                    "select (select count(*) from webhooks.outbox where relayed_at is null)"
                    " + (select count(*) from webhooks.deliveries where status = 'pending')"
                )
                == 0
            ),
            timeout,
            "every delivery to finish",
        )

    def stop_workers(self) -> None:
        """Stop every worker started so far (relays keep running)."""
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def stop(self) -> None:
        self.stop_workers()
        for relay, thread in self.relays:
            relay.stop()
            thread.join(timeout=10)
        self.conn.close()


def fan_out(p: Pipeline) -> list[tuple[int, str]]:
    """Create the deliveries of every published event, as the relay does, without a queue."""
    rows = p.conn.execute(
        queries.FAN_OUT, {"batch": 10_000, "lease": 30.0, "max_age": 86400.0}
    ).fetchall()
    return [(r["id"], r["message_id"]) for r in rows if r["id"] is not None]


def wait_idle(engine: Engine, timeout: float = 30.0) -> None:
    """Wait until the engine has written back every delivery handed to it."""
    deadline = time.monotonic() + timeout
    while engine.held() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.held() == 0


def queued_messages(settings: Settings) -> list[tuple[int, str]]:
    """Return the (delivery id, message id) of every message waiting, on either broker."""
    name = settings.queue_name
    if settings.broker_is_redis:
        import redis

        from worker.queue.redis import messages_key, queue_key

        client = redis.Redis.from_url(settings.broker_url)
        try:
            out = []
            for mid in client.lrange(queue_key(name), 0, -1):
                raw = client.hget(messages_key(name), mid)
                assert raw is not None
                msg = json.loads(raw)
                assert msg["options"]["redis_message_id"] == mid.decode()
                assert msg["actor_name"] == "deliver"
                out.append((msg["args"][0], msg["args"][1]))
            return out
        finally:
            client.close()
    import pika

    # Read without acknowledging: closing the connection puts every message back.
    connection = pika.BlockingConnection(pika.URLParameters(settings.broker_url))
    try:
        channel = connection.channel()
        out = []
        while True:
            method, _, body = channel.basic_get(name, auto_ack=False)
            if method is None:
                return out
            msg = json.loads(body)
            assert msg["actor_name"] == "deliver" and msg["queue_name"] == name
            out.append((msg["args"][0], msg["args"][1]))
    finally:
        connection.close()


def lose_messages(settings: Settings) -> None:
    """Make the broker lose every message: flush Redis, purge the RabbitMQ queue."""
    if settings.broker_is_redis:
        import redis

        client = redis.Redis.from_url(settings.broker_url)
        client.flushdb()
        client.close()
        return
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(settings.broker_url))
    try:
        connection.channel().queue_purge(settings.queue_name)
    finally:
        connection.close()
