"""The Dramatiq side of the workers: the broker and the `deliver` actor.

Nothing happens at import time. `webhooks worker` runs Dramatiq's own CLI with
``worker.engine.actors:setup``, which Dramatiq calls in each worker process to build the broker
and the delivery engine (`worker.engine`) of that process: it is a process's entry point,
the one place here that reads the settings, and the engine is built by a `worker.app.App`.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from worker.engine.engine import Engine
from worker.engine.observer import Observer
from worker.observe import logs, metrics
from worker.queue import ACTOR
from worker.settings import Settings


def build_broker(settings: Settings) -> dramatiq.Broker:
    """Return the configured broker (Redis or RabbitMQ), with no middleware of Dramatiq's own.

    Retries are ours (kept in Postgres), so Dramatiq's Retries, AgeLimit, Callbacks and
    Pipelines are left out; the actor only hands the delivery to the engine, so TimeLimit
    and ShutdownNotifications have nothing to interrupt (each attempt has its own deadline).
    """
    if settings.broker_is_redis:
        from worker.queue import redis

        return redis.build_broker(settings.broker_url)
    from worker.queue import rabbitmq

    return rabbitmq.build_broker(settings.broker_url, settings.rabbitmq_queue_type)


def register(
    broker: dramatiq.Broker, engine: Engine, settings: Settings
) -> dramatiq.Actor[Any, Any]:
    """Declare the `deliver` actor on ``broker``, handing each message to ``engine``.

    The actor returns as soon as the engine holds the delivery (it blocks while the engine
    is full), so Dramatiq acknowledges the message then; Postgres keeps the delivery's lease
    until its attempt is recorded (see `worker.engine.engine`). The engine starts with the
    Dramatiq worker and finishes what it holds when the worker stops.
    """

    def deliver(delivery_id: int, message_id: str) -> None:
        engine.submit(delivery_id, message_id)

    broker.add_middleware(EngineLifecycle(engine))
    declare = dramatiq.actor(actor_name=ACTOR, queue_name=settings.queue_name, broker=broker)
    return declare(deliver)


class EngineLifecycle(dramatiq.Middleware):
    """Start the engine when a Dramatiq worker boots, drain and stop it when it stops."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.engine.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.engine.close()


def queue_prefetch(threads: int, concurrency: int) -> int:
    """Return how many messages a worker process fetches from Redis ahead of its engine.

    Dramatiq's default (twice the threads) fetches 16 at a time, so the engine's claims
    carry a handful of deliveries each; 64 ahead took a fast pipeline from ~2,900 to
    ~5,200 deliveries/s on two processes, with half the CPU per delivery in Postgres.
    """
    return max(2 * threads, min(64, concurrency))


def build_engine(
    settings: Settings, concurrency: int | None = None, observer: Observer | None = None
) -> Engine:
    """Return this process's delivery engine (not started: the Dramatiq worker starts it).

    ``concurrency`` defaults to WEBHOOKS_WORKER_CONCURRENCY.
    """
    from worker.app import App  # a process's entry point: the App builds what the engine uses

    return App(settings).engine(concurrency=concurrency, observer=observer)


def setup() -> None:
    """Build this worker process's broker and actor (Dramatiq calls it per process)."""
    settings = Settings.from_env()
    logs.configure(settings.log_format, settings.log_level)
    broker = build_broker(settings)
    # Set by `webhooks worker`: this process writes its metric files there, and the endpoint
    # process (worker.observe.health.serve_workers) sums every process's files.
    observer = metrics.worker_process_metrics(broker, settings.metrics_multiproc_dir)
    dramatiq.set_broker(broker)
    register(broker, build_engine(settings, observer=observer), settings)
