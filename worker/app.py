"""The composition root: build, once, what every entry point shares from one `Settings`.

The CLI, the HTTP API, the portal and the workers' actors all start here rather than reading
the environment or opening clients of their own: Postgres connections (one per command, a
pool for a long-lived server, or a connection a daemon keeps), the queue the configured
broker offers, the rate store, the vault that opens endpoint secrets, the endpoint registry
over a connection, and the two daemons built from them: the delivery engine (its async pool
and HTTP sender) and the relay. Nothing below this module builds a pool or a client.

Everything is opened on first use, not when the `App` is built: the CLI's `--help`, the API's
OpenAPI document and a mounted application's startup need no database.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from worker.errors import DatabaseError
from worker.ops.endpoints import Endpoints
from worker.ops.prefetch import Prefetched, prefetch
from worker.policy.destination import Resolver
from worker.queue import Queue, from_url
from worker.settings import Settings
from worker.store.db import connect, options
from worker.store.vault import Vault

if TYPE_CHECKING:
    import redis

    from worker.delivery.sender import Sender
    from worker.engine.engine import Engine
    from worker.engine.observer import Observer
    from worker.observe.tracing import Tracing
    from worker.ops.ping import TestAttempt
    from worker.ops.portal import Made
    from worker.relay.daemon import Relay

log = logging.getLogger("webhooks")

#: How long a pooled caller waits for a free connection before it is told Postgres is busy.
POOL_TIMEOUT = 10.0


class App:
    """Settings, and the clients and services built from them, shared by one process.

    ``pool_size`` > 0 lends connections from a pool (a server answering many callers);
    0 opens one connection per `connection()` (a command that runs once).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        pool_size: int = 0,
        application_name: str = "webhooks",
        warn: Callable[[str], None] | None = None,
        resolver: Resolver = socket.getaddrinfo,
    ) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        #: How an endpoint URL's host is resolved when it is checked (tests pass a fake).
        self.resolver = resolver
        self.vault = Vault(self.settings.secret_key)
        self.pool_size = pool_size
        self.application_name = application_name
        self.warn = warn if warn is not None else (lambda text: log.warning("%s", text))
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Any] | None = None
        self._queue: Queue | None = None
        self._rate_store: redis.Redis | None = None
        self._tracing: tuple[Tracing | None] | None = None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Lend an autocommit connection returning dict rows, closed or returned after use."""
        if not self.pool_size:
            with connect(self.settings.require_database_url()) as conn:
                yield conn
            return
        pool = self._open_pool()
        try:
            with pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseError(f"no Postgres connection within {POOL_TIMEOUT:g}s") from exc

    def _open_pool(self) -> ConnectionPool[Any]:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.settings.require_database_url(),
                    min_size=1,
                    max_size=self.pool_size,
                    timeout=POOL_TIMEOUT,
                    open=False,
                    kwargs=options(self.application_name),
                )
                self._pool.open(wait=False)
            return self._pool

    def open(self, role: str) -> psycopg.Connection[Any]:
        """Open a new autocommit connection a daemon keeps, named ``role`` in pg_stat_activity.

        Errors are psycopg's own: the daemon's outage policy retries the transient ones.
        """
        return psycopg.connect(
            self.settings.require_database_url(),
            connect_timeout=10,
            # Shown in pg_stat_activity unless the DSN names the application itself.
            **options(role),
        )

    def queue(self) -> Queue:
        """Return the queue of the configured broker (WEBHOOKS_BROKER_URL, else REDIS_URL)."""
        with self._lock:
            if self._queue is None:
                self._queue = from_url(
                    self.settings.broker_url,
                    self.settings.queue_name,
                    self.settings.rabbitmq_queue_type,
                )
            return self._queue

    def rate_store(self) -> redis.Redis | None:
        """Return the Redis that counts rate limits, or None to count them in Postgres.

        The per-endpoint rate limit is counted where the broker is: Redis when the queue is
        in Redis, else Postgres (a RabbitMQ deployment runs no Redis at all).
        """
        if not self.settings.broker_is_redis:
            return None
        import redis

        with self._lock:
            if self._rate_store is None:
                self._rate_store = redis.Redis.from_url(self.settings.broker_url, socket_timeout=10)
            return self._rate_store

    def engine(
        self,
        *,
        concurrency: int | None = None,
        observer: Observer | None = None,
        sender: Sender | None = None,
    ) -> Engine:
        """Return a delivery engine (not started) with its own async pool and HTTP sender.

        ``concurrency`` (requests in flight) defaults to WEBHOOKS_WORKER_CONCURRENCY. The
        engine opens its pool when it starts and closes it, and its sender, when it stops.
        ``sender`` replaces the HTTP sender (a test's fake).
        """
        # Imported here: aiohttp and the engine are needed by the workers only.
        from psycopg_pool import AsyncConnectionPool

        from worker.engine.database import Database
        from worker.engine.engine import Engine, log
        from worker.observe.tracing import OFF
        from worker.outages import Outage

        settings = self.settings
        slots = concurrency if concurrency is not None else settings.worker_concurrency
        role = "webhooks-worker"
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.require_database_url(),
            min_size=1,
            max_size=3,  # claims, writes, endpoint disables: see worker.engine.database
            kwargs=options(role),
            open=False,
            name=role,
            timeout=10.0,
        )
        sender = sender or self.sender(slots)  # one pooled connection per slot
        return Engine(
            settings,
            db=Database(pool, Outage("Postgres or Redis", log)),
            sender=sender,
            vault=self.vault,
            rate_store=self.rate_store(),
            concurrency=slots,
            observer=observer,
            tracing=self.tracing("webhooks-worker") or OFF,
        )

    def sender(self, connections: int) -> Sender:
        """Return an HTTP sender with the settings' destination guard and deadlines, holding
        at most ``connections`` pooled connections; its session opens on its first request."""
        from worker.delivery.http import HttpSender
        from worker.delivery.request import USER_AGENT

        settings = self.settings
        return HttpSender(
            allowed_networks=settings.allowed_networks,
            connect_timeout=settings.connect_timeout,
            request_timeout=settings.request_timeout,
            user_agent=USER_AGENT,
            max_connections=connections,
        )

    def relay(self, **overrides: Any) -> Relay:
        """Return the outbox relay and scheduler over this App's connections and queue.

        ``overrides`` replace fields of its `RelayConfig` (the CLI's --batch-size and
        --lease; a test's intervals).
        """
        from worker.relay.daemon import Relay, RelayConfig

        config = dataclasses.replace(RelayConfig.of(self.settings), **overrides)
        relay = Relay(config, self.open, self.queue())
        tracing = self.tracing("webhooks-relay")
        if tracing is not None:
            relay.on_fan_out.append(tracing.fanned_out)
        return relay

    def tracing(self, service: str) -> Tracing | None:
        """Return the OpenTelemetry tracing the OTEL_* variables ask for, else None.

        One per App (so one TracerProvider per process); ``service`` names the process's
        service unless OTEL_SERVICE_NAME does (`worker.observe.tracing.from_settings`).
        """
        from worker.observe.tracing import from_settings

        with self._lock:
            if self._tracing is None:
                self._tracing = (from_settings(self.settings, service),)
            return self._tracing[0]

    def endpoints(
        self, conn: psycopg.Connection[Any], *, resolver: Resolver | None = None
    ) -> Endpoints:
        """Return the endpoint registry on ``conn``, with this process's settings.

        ``resolver`` answers the destination check of a URL being set: `prefetch` resolves
        it before a connection is taken, so none is held while a name server answers.
        """
        return Endpoints(
            conn,
            self.vault,
            allowed_networks=self.settings.allowed_networks,
            warn=self.warn,
            operations_tenant=self.settings.operations_tenant,
            resolver=resolver if resolver is not None else self.resolver,
        )

    def prefetch(self, url: str | None) -> Prefetched:
        """Resolve the host of a URL about to be set on an endpoint, before any connection
        is taken; pass the answer to `endpoints` as its ``resolver``."""
        return prefetch(url, self.settings.allowed_networks, self.resolver)

    def send_test_event(
        self,
        endpoint_id: str,
        *,
        event_type: str = "webhooks.test",
        tenant_id: str | None = None,
    ) -> TestAttempt:
        """Send a test event to one endpoint now and return the attempt (`endpoint test`).

        A connection is taken for the write before the attempt and for the record after it,
        none while the receiver answers.
        """
        # Imported here: the sender (aiohttp) is needed by workers and endpoint tests only.
        from worker.ops import ping

        return ping.send_test_event(
            self.connection,
            self.settings,
            endpoint_id,
            event_type=event_type,
            tenant_id=tenant_id,
            vault=self.vault,
            # One connection: the test sends one request and closes its sender after it.
            sender=lambda: self.sender(1),
        )

    def portal_link(
        self,
        tenant_id: str | None,
        *,
        ttl: float | None = None,
        read_only: bool = False,
        reveal_secrets: bool = True,
        created_by: str = "",
    ) -> Made:
        """Make a single-use link into the portal for one tenant (None: an admin link).

        ``ttl`` defaults to WEBHOOKS_PORTAL_LINK_TTL; the URL is under WEBHOOKS_PORTAL_URL.
        """
        from worker.ops import portal

        with self.connection() as conn:
            link, token = portal.create_link(
                conn,
                tenant_id=tenant_id,
                ttl=ttl if ttl is not None else self.settings.portal_link_ttl,
                read_only=read_only,
                reveal_secrets=reveal_secrets,
                created_by=created_by,
            )
        return portal.Made(
            link.id, portal.link_url(self.settings.portal_url, token), link.expires_at
        )

    def close(self) -> None:
        """Close the pool, the broker connection and the rate store, if they were opened."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            if self._queue is not None:
                self._queue.close()
                self._queue = None
            if self._rate_store is not None:
                self._rate_store.close()
                self._rate_store = None
