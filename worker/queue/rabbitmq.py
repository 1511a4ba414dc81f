"""The RabbitMQ broker: a durable queue that Dramatiq's RabbitmqBroker consumes.

Messages are Dramatiq's own (same encoder, same fields), published persistent to the queue
Dramatiq declares (same name and arguments), so stock `RabbitmqBroker` workers consume them.
A batch is published on a channel in confirm mode: every message of the batch is written
at once, then `enqueue` waits for RabbitMQ's confirms of all of them (it sends them
coalesced, `multiple`), so it returns only once RabbitMQ has routed and persisted the whole
batch, and raises `BrokerError` if any message was refused (nack) or the connection dropped
before every confirm arrived. One round trip per batch, and no
Python round trip through pika's blocking adapter per message: `BlockingChannel` waits for
each confirm in turn, and flushes its socket once per `basic_publish` even in an AMQP
transaction (what this module used before: 3,470 messages/s in `webhooks bench`).

The queue is a classic one by default, or a quorum queue (``x-queue-type: quorum``,
replicated by Raft across a cluster) with WEBHOOKS_RABBITMQ_QUEUE_TYPE=quorum; the workers'
`RabbitmqBroker` declares it with the same arguments (`queue_arguments`).

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
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import xq_name
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from worker.outages import ConsumerOutage, first_line
from worker.queue import BrokerError, BrokerRefused, Item, encode

#: WEBHOOKS_RABBITMQ_QUEUE_TYPE's values.
QUEUE_TYPES = ("classic", "quorum")
#: Seconds `enqueue` waits for a batch's confirms before it gives up on the connection.
CONFIRM_TIMEOUT = 30.0


def queue_arguments(name: str, queue_type: str = "classic") -> dict[str, Any]:
    """Return the arguments the queue ``name`` is declared with, by the relay and workers.

    Dramatiq's own (RabbitmqBroker._build_queue_arguments), plus ``x-queue-type`` for a
    quorum queue: RabbitMQ refuses to declare a queue with arguments other than those it was
    created with, so both sides must agree. A classic queue carries no ``x-queue-type``, as
    stock Dramatiq declares it, so queues made before the setting existed stay compatible.
    """
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": xq_name(name),
    }
    if queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
    return arguments


_PERSISTENT = pika.BasicProperties(delivery_mode=2)
#: The AMQP reply code of a queue declared with arguments other than its own.
_PRECONDITION_FAILED = 406


def _nothing() -> None:
    """Do nothing: scheduled only to wake `process_data_events`."""


class _Confirms:
    """Count the publisher confirms of the batch a channel is publishing.

    Delivery tags number a confirm-mode channel's messages from 1; an ack or nack with
    ``multiple`` settles every tag up to its own. The batch's tags are the last ``size``
    published, so a batch is settled when the highest settled tag reaches its last one and
    every tag in between was settled (tracked as a set, cleared by ``multiple`` in one go).
    """

    def __init__(self) -> None:
        self.selected = False
        self.published = 0
        self.pending: set[int] = set()
        self.refused = 0
        self.wake: Any = None

    @property
    def waiting(self) -> int:
        return len(self.pending)

    def start(self, size: int) -> None:
        first = self.published + 1
        self.published += size
        self.pending = set(range(first, self.published + 1))
        self.refused = 0
        self.wake = None

    def on_select(self, _frame: Any) -> None:
        self.selected = True

    def on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        if method.multiple:
            if self.pending and tag >= max(self.pending):
                settled = len(self.pending)
                self.pending.clear()
            else:
                before = len(self.pending)
                self.pending = {t for t in self.pending if t > tag}
                settled = before - len(self.pending)
        elif tag in self.pending:
            self.pending.discard(tag)
            settled = 1
        else:
            settled = 0
        if isinstance(method, pika.spec.Basic.Nack):
            self.refused += settled
        if not self.pending and self.wake is not None:
            wake, self.wake = self.wake, None
            wake()


#: What RabbitMQ answers to credentials or a vhost it refuses: no retry fixes these.
_REFUSALS = (
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
)


class RabbitQueue:
    """The `worker.queue.Queue` of a RabbitMQ queue (thread-safe, one connection)."""

    can_tell_pending = False

    def __init__(self, url: str, name: str = "webhooks", queue_type: str = "classic") -> None:
        if queue_type not in QUEUE_TYPES:
            raise ValueError(f"queue_type must be one of {QUEUE_TYPES}, got {queue_type!r}")
        self.url = url
        self.name = name
        self.queue_type = queue_type
        self.arguments = queue_arguments(name, queue_type)
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._confirms = _Confirms()

    def _open(self) -> Any:
        if self._channel is None or not self._channel.is_open:
            self._drop()
            params = pika.URLParameters(self.url)
            params.socket_timeout = 5
            params.blocked_connection_timeout = 10
            self._connection = pika.BlockingConnection(params)
            channel = self._connection.channel()
            self._confirms = _Confirms()
            # The adapter's own channel (pika.channel.Channel) in confirm mode: its callbacks
            # count confirms without the blocking wrapper's wait per message.
            raw = channel._impl
            raw.confirm_delivery(self._confirms.on_confirm, callback=self._confirms.on_select)
            connection = self._connection
            while not self._confirms.selected:
                connection.process_data_events(time_limit=0.01)
                if not channel.is_open:
                    raise pika.exceptions.ChannelClosed(0, "closed while selecting confirms")
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
            except pika.exceptions.ChannelClosedByBroker as exc:
                self._drop()
                if exc.reply_code == _PRECONDITION_FAILED:
                    raise BrokerRefused(
                        f"RabbitMQ: queue {self.name!r} exists with other arguments than a"
                        f" {self.queue_type} queue's (WEBHOOKS_RABBITMQ_QUEUE_TYPE): drain and"
                        f" delete it to change its type ({first_line(exc)})"
                    ) from exc
                raise BrokerError(f"RabbitMQ: {first_line(exc) or type(exc).__name__}") from exc
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
            # that was deleted since would be dropped without a word. Not `mandatory`: that
            # costs RabbitMQ ~15% more CPU per message, and a queue deleted in the
            # milliseconds between the two is what the lease repairs anyway.
            channel.queue_declare(queue=self.name, durable=True, arguments=self.arguments)
            connection = self._connection
            assert connection is not None
            confirms = self._confirms
            confirms.start(len(items))
            publish = channel._impl.basic_publish
            name = self.name
            for delivery_id, message_id in items:
                publish("", name, encode(name, delivery_id, message_id), _PERSISTENT)
            # Wake process_data_events as soon as the last confirm is counted; it also
            # returns when the channel or connection closes (raising for the connection).
            confirms.wake = lambda: connection.add_callback_threadsafe(_nothing)
            deadline = time.monotonic() + CONFIRM_TIMEOUT
            while confirms.waiting and channel.is_open:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise pika.exceptions.AMQPError(
                        f"no confirm for {confirms.waiting} of {len(items)} messages"
                        f" within {CONFIRM_TIMEOUT:g}s"
                    )
                connection.process_data_events(time_limit=left)
            if confirms.waiting:
                raise pika.exceptions.AMQPError(
                    f"channel closed with {confirms.waiting} of {len(items)} messages unconfirmed"
                )
            if confirms.refused:
                # Every message is settled, some refused: the whole batch is reported failed
                # and its deliveries are enqueued again within their lease.
                raise pika.exceptions.AMQPError(
                    f"{confirms.refused} of {len(items)} messages refused (nack)"
                )

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
                queue=self.name, durable=True, arguments=self.arguments
            )
            return int(declared.method.message_count)

    def ping(self) -> None:
        with self._use():
            pass

    def close(self) -> None:
        with self._lock:
            self._drop()


def build_broker(url: str, queue_type: str = "classic") -> RabbitmqBroker:
    """Return the workers' RabbitMQ broker, with no middleware of Dramatiq's own.

    Confirms are on for anything the workers enqueue themselves (nothing today: the relay,
    replay and retry publish through `RabbitQueue`). Its queues are declared as
    ``queue_type`` (WEBHOOKS_RABBITMQ_QUEUE_TYPE), with the arguments `RabbitQueue` uses.
    """
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"queue_type must be one of {QUEUE_TYPES}, got {queue_type!r}")
    broker = _OutageAwareRabbitmqBroker(url=url, confirm_delivery=True, middleware=[])
    broker.queue_type = queue_type
    return broker


class _OutageAwareRabbitmqBroker(RabbitmqBroker):
    """RabbitmqBroker whose consumer outages are logged once (`ConsumerOutage`)."""

    queue_type = "classic"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outage = ConsumerOutage("RabbitMQ")

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        # The queue and its delay queue (.DQ); the dead-letter queue (.XQ) keeps Dramatiq's.
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
        return arguments

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        self.outage.watch(queue_name)
        self.outage.before_reconnect()
        consumer = super().consume(queue_name, prefetch, timeout)
        self.outage.connected()  # the consumer opened its channel: RabbitMQ is back
        return consumer
