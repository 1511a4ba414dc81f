"""The RabbitMQ broker: a durable queue that Dramatiq's RabbitmqBroker consumes.

Messages are Dramatiq's own (same encoder, same fields), published persistent to the queue
Dramatiq declares (same name and arguments), so stock `RabbitmqBroker` workers consume them.
A batch is published in one AMQP transaction: `tx.commit` returns once RabbitMQ has routed
and persisted every message of the batch, the guarantee publisher confirms give per message,
for one round trip per batch instead of one per message.

RabbitMQ cannot be asked whether a message is still queued, so `may_be_pending` answers
False: once a queued delivery's lease (30 s) has passed without an attempt, the scheduler
enqueues it again. That covers every way a message is lost (a relay killed between commit
and publish, a purged or deleted queue, a broker restarted without its data) within the
lease, with nothing to detect. The price is duplicates when the queue holds more than a
lease's worth of work: each finds the delivery claimed, finished, or expecting the same
message id and only one of them is attempted (the claim matches the delivery's current
message id and lock, guarantee 5). A worker killed mid-delivery loses no message either:
RabbitMQ returns its unacknowledged ones the moment its connection closes.

This module is the only one that touches Dramatiq's RabbitMQ layout.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import xq_name
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from worker.outages import ConsumerOutage, first_line
from worker.queue import BrokerError, BrokerRefused, Item, encode

#: Dramatiq's queue arguments (RabbitmqBroker._build_queue_arguments): a queue declared
#: with other arguments is refused by RabbitMQ, so both sides must agree.


def queue_arguments(name: str) -> dict[str, Any]:
    """Return the arguments Dramatiq declares its queue ``name`` with."""
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": xq_name(name)}


_PERSISTENT = pika.BasicProperties(delivery_mode=2)


#: What RabbitMQ answers to credentials or a vhost it refuses: no retry fixes these.
_REFUSALS = (
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
)


class RabbitQueue:
    """The `worker.queue.Queue` of a RabbitMQ queue (thread-safe, one connection)."""

    can_tell_pending = False

    def __init__(self, url: str, name: str = "webhooks") -> None:
        self.url = url
        self.name = name
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None

    def _open(self) -> Any:
        if self._channel is None or not self._channel.is_open:
            self._drop()
            params = pika.URLParameters(self.url)
            params.socket_timeout = 5
            params.blocked_connection_timeout = 10
            self._connection = pika.BlockingConnection(params)
            channel = self._connection.channel()
            channel.tx_select()
            self._channel = channel
        return self._channel

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):  # closing a broken connection
                connection.close()

    @contextlib.contextmanager
    def _use(self) -> Iterator[Any]:
        with self._lock:
            try:
                yield self._open()
            except _REFUSALS as exc:
                self._drop()
                raise BrokerRefused(f"RabbitMQ: {first_line(exc) or type(exc).__name__}") from exc
            except (pika.exceptions.AMQPError, AMQPConnectorException, OSError) as exc:
                # AMQPConnectorException: what BlockingConnection raises as it is when the
                # handshake times out (a broker that accepts and never answers).
                self._drop()
                raise BrokerError(f"RabbitMQ: {first_line(exc) or type(exc).__name__}") from exc

    def enqueue(self, items: Sequence[Item]) -> None:
        if not items:
            return
        with self._use() as channel:
            # Declared with every batch (one round trip): a message published to a queue
            # that was deleted since would be dropped without a word.
            channel.queue_declare(
                queue=self.name, durable=True, arguments=queue_arguments(self.name)
            )
            for delivery_id, message_id in items:
                channel.basic_publish(
                    exchange="",
                    routing_key=self.name,
                    body=encode(self.name, delivery_id, message_id),
                    properties=_PERSISTENT,
                )
            channel.tx_commit()

    def may_be_pending(self, message_ids: Sequence[str]) -> list[bool]:
        # RabbitMQ cannot be asked: see the module docstring.
        return [False] * len(message_ids)

    def lost_data(self) -> bool:
        # Nothing to detect: every lost message is re-enqueued within its lease anyway.
        return False

    def requeue_abandoned(self) -> int:
        # RabbitMQ requeues a consumer's unacknowledged messages when its connection closes.
        return 0

    def depth(self) -> int:
        with self._use() as channel:
            declared = channel.queue_declare(
                queue=self.name, durable=True, arguments=queue_arguments(self.name)
            )
            return int(declared.method.message_count)

    def ping(self) -> None:
        with self._use():
            pass

    def close(self) -> None:
        with self._lock:
            self._drop()


def build_broker(url: str) -> RabbitmqBroker:
    """Return the workers' RabbitMQ broker, with no middleware of Dramatiq's own.

    Confirms are on for anything the workers enqueue themselves (nothing today: the relay,
    replay and retry publish through `RabbitQueue`).
    """
    return _OutageAwareRabbitmqBroker(url=url, confirm_delivery=True, middleware=[])


class _OutageAwareRabbitmqBroker(RabbitmqBroker):
    """RabbitmqBroker whose consumer outages are logged once (`ConsumerOutage`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outage = ConsumerOutage("RabbitMQ")

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        self.outage.watch(queue_name)
        self.outage.before_reconnect()
        consumer = super().consume(queue_name, prefetch, timeout)
        self.outage.connected()  # the consumer opened its channel: RabbitMQ is back
        return consumer
