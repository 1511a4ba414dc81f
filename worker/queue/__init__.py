"""The queue seam: what the relay, replay, `status`, health and the workers ask of a broker.

A `Queue` carries (delivery id, message id) pairs from whoever enqueues to the workers'
`deliver` actor. Postgres stays the source of truth (guarantees 3 and 6): a queue only
hints that a delivery is due, so every implementation may lose or duplicate messages; the
scheduler's lease re-enqueues what was lost, and a worker's claim matches a delivery's
current message id only, so a stale or duplicate message makes no second attempt
(guarantee 5).

Implementations, one module each, and the only places that touch a broker's private layout:

- `worker.queue.redis`: Dramatiq's Redis layout, written in pipelined batches;
- `worker.queue.rabbitmq`: a durable RabbitMQ queue (classic or quorum) that Dramatiq's
  RabbitmqBroker consumes, published with publisher confirms awaited once per batch;
- `worker.queue.memory`: a list in this process, for unit tests.

Every broker failure is raised as `BrokerError`, a `ConnectionError`, so the relay's and the
CLI's handling of transient failures covers every broker alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import dramatiq

from worker.errors import ConfigError, WebhooksError

#: The Dramatiq actor every message names.
ACTOR = "deliver"
#: Seconds a queued delivery is left to its message before the scheduler checks on it.
LEASE_SECONDS = 30.0
#: The URL schemes of each broker (WEBHOOKS_BROKER_URL); memory:// only in tests.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
AMQP_SCHEMES = ("amqp://", "amqps://")
MEMORY_SCHEME = "memory://"

Item = tuple[int, str]


def encode(queue: str, delivery_id: int, message_id: str, **options: Any) -> bytes:
    """Return the Dramatiq message that asks a worker to attempt one delivery.

    The fields of dramatiq.Message.asdict(), encoded by Dramatiq's own encoder, without
    building a Message first: that halves the relay's encoding time (`webhooks bench`,
    relay alone: 22k -> 25k deliveries/s). ``options`` are the broker's own.
    """
    return dramatiq.get_encoder().encode(
        {
            "queue_name": queue,
            "actor_name": ACTOR,
            "args": [delivery_id, message_id],
            "kwargs": {},
            "options": options,
            "message_id": message_id,
            "message_timestamp": int(time.time() * 1000),
        }
    )


class BrokerError(WebhooksError, ConnectionError):
    """Report a broker that cannot be reached or refused an operation (transient)."""


class BrokerRefused(BrokerError):
    """Report a broker that answers but refuses this configuration (not transient).

    A Redis database index the server does not have, RabbitMQ credentials or a vhost it
    does not know: waiting will not fix these, an operator must.
    """


class Queue(Protocol):
    """One named queue of delivery messages on one broker."""

    name: str
    #: What the scheduler's lease answers on this broker: True when `may_be_pending` can
    #: tell a lost message from a waiting one (Redis), False when it cannot (RabbitMQ).
    can_tell_pending: bool

    def enqueue(self, items: Sequence[Item]) -> None:
        """Push (delivery id, message id) pairs durably, as one batch; raise BrokerError."""

    def may_be_pending(self, message_ids: Sequence[str]) -> list[bool]:
        """Tell, per message id, whether the broker may still hold it (False: lost)."""

    def lost_data(self) -> bool:
        """Tell whether the broker lost its data since a relay last asked (once per loss)."""

    def requeue_abandoned(self) -> int:
        """Requeue the messages consumers that died had fetched; return how many.

        Within seconds of the death, so they are delivered within the request deadline plus
        a few seconds, like the deliveries the dead engine held (their claims' locks).
        """

    def depth(self) -> int:
        """Return how many messages wait in the queue."""

    def ping(self) -> None:
        """Raise BrokerError unless the broker answers (readiness)."""

    def close(self) -> None:
        """Close connections; the queue reconnects on next use."""


def as_queue(broker: object, queue_name: str = "webhooks") -> Queue:
    """Return ``broker`` as a `Queue`: a Queue as is, a `redis.Redis` client wrapped.

    Service functions (replay, retry, status) take a Queue; code written when they took a
    Redis client keeps working.
    """
    import redis

    if isinstance(broker, redis.Redis):
        from worker.queue.redis import RedisQueue

        return RedisQueue.of_client(broker, queue_name)
    return broker  # type: ignore[return-value]


def kind(url: str) -> str:
    """Return ``redis``, ``rabbitmq`` or ``memory`` for a broker URL; else ConfigError."""
    if url.startswith(REDIS_SCHEMES):
        return "redis"
    if url.startswith(AMQP_SCHEMES):
        return "rabbitmq"
    if url.startswith(MEMORY_SCHEME):
        return "memory"
    *others, last = REDIS_SCHEMES + AMQP_SCHEMES
    raise ConfigError("WEBHOOKS_BROKER_URL", f"must start with {', '.join(others)} or {last}")


def from_url(url: str, queue_name: str = "webhooks", rabbitmq_queue_type: str = "classic") -> Queue:
    """Return the queue ``queue_name`` on the broker ``url`` names (connects lazily).

    ``rabbitmq_queue_type`` (WEBHOOKS_RABBITMQ_QUEUE_TYPE) is how a RabbitMQ queue is
    declared; other brokers ignore it.
    """
    which = kind(url)
    if which == "redis":
        from worker.queue.redis import RedisQueue

        return RedisQueue(url, queue_name)
    if which == "rabbitmq":
        from worker.queue.rabbitmq import RabbitQueue

        return RabbitQueue(url, queue_name, rabbitmq_queue_type)
    from worker.queue.memory import MemoryQueue

    return MemoryQueue(queue_name)
