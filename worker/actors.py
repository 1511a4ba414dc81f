"""The Dramatiq side of the workers: the broker and the `deliver` actor.

Nothing happens at import time. `webhooks worker` runs Dramatiq's own CLI with
``worker.actors:setup``, which Dramatiq calls in each worker process to build the broker,
the connection pool and the HTTP client of that process.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import ShutdownNotifications, TimeLimit
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from worker import logs, metrics, queue
from worker.consumer import WakefulRedisBroker
from worker.delivery import Deliverer, Observer
from worker.settings import Settings

#: Dramatiq requeues unacked messages of a worker silent for this long (ms).
HEARTBEAT_TIMEOUT_MS = 60_000
#: Per-million chance a broker call also requeues dead workers' messages (default is 1000).
MAINTENANCE_CHANCE = 10_000


def build_broker(settings: Settings) -> WakefulRedisBroker:
    """Return the Redis broker, with only the middleware the delivery needs.

    Retries are ours (kept in Postgres), so Dramatiq's Retries, AgeLimit, Callbacks and
    Pipelines are left out; TimeLimit is only a backstop behind the per-attempt deadline.
    """
    return WakefulRedisBroker(  # type: ignore[no-untyped-call]
        url=settings.redis_url,
        namespace=queue.NAMESPACE,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
        middleware=[
            TimeLimit(time_limit=int((settings.request_timeout + 60) * 1000)),
            ShutdownNotifications(),
        ],
    )


def register(
    broker: dramatiq.Broker, deliverer: Deliverer, settings: Settings
) -> dramatiq.Actor[Any, Any]:
    """Declare the `deliver` actor on ``broker``."""

    def deliver(delivery_id: int, message_id: str) -> None:
        deliverer.deliver(delivery_id, message_id)

    declare = dramatiq.actor(actor_name=queue.ACTOR, queue_name=settings.queue_name, broker=broker)
    return declare(deliver)


def build_deliverer(
    settings: Settings, threads: int, observer: Observer | None = None
) -> Deliverer:
    """Return a Deliverer with its own connection pool and HTTP client."""
    pool: ConnectionPool[Any] = ConnectionPool(
        settings.require_database_url(),
        min_size=1,
        max_size=max(2, threads),
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            # Shown in pg_stat_activity unless the DSN names the application itself.
            "fallback_application_name": "webhooks-worker",
        },
        open=True,
        name="webhooks-worker",
    )
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    return Deliverer(settings, pool=pool, redis_client=client, threads=threads, observer=observer)


def setup() -> None:
    """Build this worker process's broker and actor (Dramatiq calls it per process)."""
    settings = Settings.from_env()
    logs.configure(settings.log_format)
    threads = int(os.environ.get("WEBHOOKS_WORKER_THREADS", "8"))
    broker = build_broker(settings)
    # Set by `webhooks worker`: this process writes its metric files there, and the endpoint
    # process (worker.health.serve_workers) sums every process's files.
    observer = metrics.worker_process_metrics(broker, os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    dramatiq.set_broker(broker)
    register(broker, build_deliverer(settings, threads, observer=observer), settings)
