"""The Redis broker: Dramatiq's own Redis layout, written in batches, and its consumers.

Enqueueing writes the Redis broker's layout (a hash of message id -> encoded message, and
a list of ids, as dramatiq's dispatch.lua "enqueue" does), so stock Dramatiq workers consume
the messages, while a whole batch costs one pipelined round trip instead of one script call
per message. Whether a message still exists is one HMGET, so the scheduler re-enqueues only
what Redis really lost.

Consumers (`WakefulRedisBroker`) wake when the relay enqueues and acknowledge in batches.
Stock Dramatiq consumers poll an empty queue with a backoff (5-10 ms after one empty poll,
doubling up to the worker timeout), and that sleep is most of a delivery's latency at low
load. These consumers wait on the Redis channel `RedisQueue.enqueue` publishes to with each
batch instead, and poll again as soon as a wake-up arrives. The backoff stays the longest
wait, so a lost wake-up, or a channel that cannot be reached, costs no more than the stock
consumer's sleep: the wake-up is a hint, the queue stays the only source of work.

Stock consumers also acknowledge each message with its own script call, a Redis round trip
per delivery made by the worker thread (a tenth of a worker's CPU at full load). These
collect acknowledgements and send them in one script call every few milliseconds, from the
consumer thread. An acknowledgement only removes a message the engine already holds; one
sent late, or lost with a killed process, leaves a message whose delivery Postgres already
tracks (`worker.engine`): it is requeued with the dead worker's others and finds nothing to
claim.

A worker killed with messages fetched and not yet handed to its engine leaves them in its
acknowledgement set, where they look alive to the scheduler (`existing`) and no one else may
take them. Dramatiq's own remedy is its maintenance: a random one in a hundred broker calls
requeues the sets of workers whose heartbeat is older than a minute. Its heartbeat is only
a side effect of those calls, so a consumer whose prefetch is full (its engine busy) beats
no more than a dead one, which is why the timeout has to be that long. So here each
consumer renews a liveness key with a few seconds' expiry once a second, from its own
thread (`_WakefulConsumer._beat`), and the relay, once a scheduler pass, requeues the sets
of consumers whose key expired (`requeue_abandoned`): deterministic, within seconds of the
death, on Redis's clock alone (no clock skew between hosts). A consumer that is only stalled
past the expiry has its messages requeued while it still holds them: the copies are
duplicates, and a duplicate makes no second attempt (a claim takes a delivery once, with its
current message id, guarantee 5). The beat also renews the consumer's Dramatiq heartbeat,
so Dramatiq's maintenance stops taking a busy consumer for a dead one.

This module is the only one that touches Dramatiq's private Redis layout.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, current_millis
from dramatiq.errors import ConnectionClosed

from worker.outages import ConsumerOutage, first_line
from worker.queue import BrokerError, BrokerRefused, Item, encode

log = logging.getLogger("webhooks.worker")

NAMESPACE = "dramatiq"
#: A key the relays keep in Redis; its absence tells them Redis lost its data.
SENTINEL_KEY = "webhooks:relay:alive"


def queue_key(queue: str) -> str:
    """Return the Redis list of message ids of a queue."""
    return f"{NAMESPACE}:{queue}"


def messages_key(queue: str) -> str:
    """Return the Redis hash of message id -> message of a queue."""
    return f"{NAMESPACE}:{queue}.msgs"


def wake_channel(client: redis.Redis, queue: str) -> str:
    """Return the Redis channel idle workers of a queue listen on (`WakefulRedisBroker`).

    Channels are shared by every database of a Redis server, so the name carries the
    database number: deployments sharing a server do not wake each other.
    """
    return f"webhooks:wake:{client.connection_pool.connection_kwargs.get('db', 0)}:{queue}"


def enqueue(client: redis.Redis, queue: str, items: Sequence[tuple[int, str]]) -> None:
    """Push (delivery id, message id) pairs in one atomic pipeline and wake idle workers."""
    if not items:
        return
    pipe = client.pipeline(transaction=True)
    pipe.hset(
        messages_key(queue),
        mapping={mid: encode(queue, did, mid, redis_message_id=mid) for did, mid in items},
    )
    pipe.rpush(queue_key(queue), *[mid for _, mid in items])
    pipe.publish(wake_channel(client, queue), len(items))
    pipe.execute()


def existing(client: redis.Redis, queue: str, message_ids: Sequence[str]) -> list[bool]:
    """Tell, for each message id, whether Redis still holds the message (queued or unacked)."""
    if not message_ids:
        return []
    values = client.hmget(messages_key(queue), list(message_ids))
    return [v is not None for v in values]


def depth(client: redis.Redis, queue: str) -> int:
    """Return how many messages wait in the queue."""
    return int(client.llen(queue_key(queue)))


#: Seconds between a live consumer's beats (its liveness key renewed).
BEAT_SECONDS = 1.0
#: A consumer whose liveness key outlived this many ms without a beat is dead: five missed
#: beats. Its fetched messages are then requeued by the next scheduler pass (about a second).
ALIVE_MS = 5_000


def consumers_key(queue: str) -> str:
    """Return the Redis set of the consumers of a queue that have beaten (Dramatiq ids)."""
    return f"webhooks:consumers:{queue}"


def alive_key(queue: str, consumer: str) -> str:
    """Return the key a live consumer keeps with a short expiry (`ALIVE_MS`)."""
    return f"webhooks:alive:{queue}:{consumer}"


def acks_key(queue: str, consumer: str) -> str:
    """Return Dramatiq's set of the messages a consumer fetched and has not acknowledged."""
    return f"{NAMESPACE}:__acks__.{consumer}.{queue}"


# Dramatiq's maintenance (dispatch.lua), for the consumers whose liveness key expired: their
# unacknowledged messages go back on the queue, if they still exist, and they are forgotten.
_REQUEUE_ABANDONED = """
local consumers, queue, messages = KEYS[1], KEYS[2], KEYS[3]
local alive, acks_prefix, acks_suffix = ARGV[1], ARGV[2], ARGV[3]
local requeued = 0
for _, id in ipairs(redis.call("smembers", consumers)) do
    if redis.call("exists", alive .. id) == 0 then
        local acks = acks_prefix .. id .. acks_suffix
        for _, message_id in ipairs(redis.call("smembers", acks)) do
            if redis.call("hexists", messages, message_id) == 1 then
                redis.call("rpush", queue, message_id)
                requeued = requeued + 1
            end
        end
        redis.call("del", acks)
        redis.call("srem", consumers, id)
    end
end
return requeued
"""


def requeue_abandoned(client: redis.Redis, queue: str) -> int:
    """Requeue what dead consumers of ``queue`` had fetched; return how many messages.

    Idle workers are woken, as by `enqueue`. Safe to run from any number of relays at once
    (one script: the first takes a dead consumer's set, the others find it gone).
    """
    requeued = int(
        client.eval(
            _REQUEUE_ABANDONED,
            3,
            consumers_key(queue),
            queue_key(queue),
            messages_key(queue),
            alive_key(queue, ""),  # + consumer id
            f"{NAMESPACE}:__acks__.",  # + consumer id + ".queue": acks_key
            f".{queue}",
        )
    )
    if requeued:
        client.publish(wake_channel(client, queue), requeued)
    return requeued


class RedisQueue:
    """The `worker.queue.Queue` of a Dramatiq Redis broker."""

    can_tell_pending = True

    def __init__(self, url: str, name: str = "webhooks") -> None:
        self.url = url
        self.name = name
        self._client: redis.Redis | None = None

    @classmethod
    def of_client(cls, client: redis.Redis, name: str = "webhooks") -> RedisQueue:
        """Return the queue ``name`` over an existing client (closed by its owner)."""
        queue = cls("redis://", name)
        queue._client = client
        return queue

    @property
    def client(self) -> redis.Redis:
        """Return the Redis client (connects on first use)."""
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=10, socket_connect_timeout=5
            )
        return self._client

    def enqueue(self, items: Sequence[Item]) -> None:
        with _wrapped():
            enqueue(self.client, self.name, items)

    def may_be_pending(self, message_ids: Sequence[str]) -> list[bool]:
        with _wrapped():
            return existing(self.client, self.name, message_ids)

    def lost_data(self) -> bool:
        """Tell whether the relays' sentinel key is gone (SET NX: one relay of many sees it)."""
        with _wrapped():
            return bool(self.client.set(SENTINEL_KEY, "1", nx=True))

    def requeue_abandoned(self) -> int:
        with _wrapped():
            return requeue_abandoned(self.client, self.name)

    def depth(self) -> int:
        with _wrapped():
            return depth(self.client, self.name)

    def ping(self) -> None:
        with _wrapped():
            self.client.ping()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@contextlib.contextmanager
def _wrapped() -> Any:
    try:
        yield
    except redis.ResponseError as exc:
        # Answered, and refused: e.g. "DB index is out of range" for a URL's database.
        raise BrokerRefused(f"Redis: {first_line(exc)}") from exc
    except redis.RedisError as exc:
        raise BrokerError(f"Redis: {first_line(exc)}") from exc


#: Dramatiq requeues unacked messages of a worker silent for this long (ms).
HEARTBEAT_TIMEOUT_MS = 60_000
#: Per-million chance a broker call also requeues dead workers' messages (default is 1000).
MAINTENANCE_CHANCE = 10_000


def build_broker(url: str) -> WakefulRedisBroker:
    """Return the workers' Redis broker, with no middleware of Dramatiq's own."""
    return WakefulRedisBroker(
        url=url,
        namespace=NAMESPACE,
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
        middleware=[],
    )


#: Acknowledgements sent in one script call at most, and the longest they wait for it (s).
ACK_BATCH = 256
ACK_INTERVAL = 0.005

# Dramatiq's own "ack" command (dispatch.lua), for many messages: forget each message only if
# this worker still held it (the maintenance of another worker may have requeued it).
_ACK_MANY = """
local held, messages = KEYS[1], KEYS[2]
for i = 1, #ARGV do
    if redis.call("srem", held, ARGV[i]) > 0 then
        redis.call("hdel", messages, ARGV[i])
    end
end
return #ARGV
"""


class WakefulRedisBroker(RedisBroker):
    """RedisBroker with `_WakefulConsumer` consumers; everything else is Dramatiq's.

    A Redis outage is logged once by `ConsumerOutage`, with a growing wait between
    reconnects, instead of Dramatiq's two lines every 3 seconds.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.outage = ConsumerOutage("Redis")

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _WakefulConsumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        self.outage.watch(queue_name)
        self.outage.before_reconnect()
        return super().consume(queue_name, prefetch, timeout)


class _WakefulConsumer(_RedisConsumer):
    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        # Dramatiq's own sleep after an empty poll is capped at 1 ms (it rounds to none);
        # the wait happens in _idle instead.
        super().__init__(broker, queue_name, prefetch, 1)  # type: ignore[no-untyped-call]
        self.idle_ms = timeout
        self.waits = 0
        self._pubsub: Any = None
        self._acks: list[str] = []
        self._acks_lock = threading.Lock()
        self._acks_sent = time.monotonic()
        self._ack_keys = [
            f"{broker.namespace}:__acks__.{broker.broker_id}.{queue_name}",
            f"{broker.namespace}:{queue_name}.msgs",
        ]
        self._ack_many = broker.client.register_script(_ACK_MANY)
        self._beaten = -BEAT_SECONDS  # time.monotonic() of the last beat; none yet

    def ack(self, message: Any) -> None:
        # Called by Dramatiq's worker threads; the consumer thread sends the batch.
        with self._acks_lock:
            self._acks.append(message.options["redis_message_id"])
        self.queued_message_ids.discard(message.message_id)

    def _send_acks(self, force: bool = False) -> None:
        if not self._acks:
            return
        due = time.monotonic() - self._acks_sent >= ACK_INTERVAL
        if not (force or due or len(self._acks) >= ACK_BATCH):
            return
        with self._acks_lock:
            ids, self._acks = self._acks[:ACK_BATCH], self._acks[ACK_BATCH:]
        try:
            self._ack_many(keys=self._ack_keys, args=ids)
        except redis.RedisError as exc:
            with self._acks_lock:  # sent with the next batch, once Redis is back
                self._acks[:0] = ids
            # What Dramatiq's consumer thread expects: it reconnects and carries on.
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        self._acks_sent = time.monotonic()

    def _beat(self) -> None:
        """Say this consumer is alive, once a second at most (before any fetch)."""
        now = time.monotonic()
        if now - self._beaten < BEAT_SECONDS:
            return
        consumer, queue = self.broker.broker_id, self.queue_name
        try:
            pipe = self.broker.client.pipeline(transaction=False)
            pipe.set(alive_key(queue, consumer), 1, px=ALIVE_MS)
            pipe.sadd(consumers_key(queue), consumer)
            # Dramatiq's heartbeat, which its own calls renew only when they fetch or ack.
            pipe.zadd(f"{self.broker.namespace}:__heartbeats__", {consumer: current_millis()})
            pipe.execute()
        except redis.RedisError as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        self._beaten = now

    def __next__(self) -> Any:
        self._beat()
        self._send_acks()
        message = super().__next__()  # type: ignore[no-untyped-call]
        outage = self.broker.outage
        if outage.failures:
            outage.connected()  # a fetch went through: Redis is back
        if message is not None:
            self.waits = 0
            return message
        self._idle()
        return None

    def _idle(self) -> None:
        self._send_acks(force=True)
        self.waits, backoff_ms = compute_backoff(self.waits, max_backoff=self.idle_ms)
        if self.outstanding_message_count >= self.prefetch:
            # Nothing may be fetched until a worker thread finishes: a wake-up would not help.
            time.sleep(backoff_ms / 1000)
            return
        try:
            if self._pubsub is None:
                pubsub = self.broker.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(wake_channel(self.broker.client, self.queue_name))
                self._pubsub = pubsub
            if self._pubsub.get_message(timeout=backoff_ms / 1000) is not None:
                self.waits = 0
                # Wake-ups sent while this consumer was busy are all answered by one poll.
                while self._pubsub.get_message(timeout=0) is not None:
                    pass
        except redis.RedisError as exc:
            log.debug("wake-up channel unavailable, polling: %s", exc)
            self._close_pubsub()
            time.sleep(backoff_ms / 1000)

    def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                self._pubsub.close()
            self._pubsub = None

    def close(self) -> None:
        self._close_pubsub()
        with contextlib.suppress(ConnectionClosed):
            while self._acks:
                self._send_acks(force=True)
        super().close()
