"""A Dramatiq Redis broker whose consumers wake when the relay enqueues and ack in batches.

Stock Dramatiq consumers poll an empty queue with a backoff (5-10 ms after one empty poll,
doubling up to the worker timeout), and that sleep is most of a delivery's latency at low
load. These consumers wait on the Redis channel `worker.queue.enqueue` publishes to with each
batch instead, and poll again as soon as a wake-up arrives. The backoff stays the longest
wait, so a lost wake-up, or a channel that cannot be reached, costs no more than the stock
consumer's sleep: the wake-up is a hint, the queue stays the only source of work.

Stock consumers also acknowledge each message with its own script call, a Redis round trip
per delivery made by the worker thread (a tenth of a worker's CPU at full load). These
collect acknowledgements and send them in one script call every few milliseconds, from the
consumer thread. An acknowledgement only removes a message the engine already holds; one
sent late, or lost with a killed process, leaves a message whose delivery Postgres already
tracks (`worker.engine`): it is requeued with the dead worker's others and finds nothing to
claim. This module is the only one that touches Dramatiq's private Redis layout.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff
from dramatiq.errors import ConnectionClosed

from worker import queue

log = logging.getLogger("webhooks.worker")

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
    """RedisBroker with `_WakefulConsumer` consumers; everything else is Dramatiq's."""

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _WakefulConsumer


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

    def __next__(self) -> Any:
        self._send_acks()
        message = super().__next__()  # type: ignore[no-untyped-call]
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
                pubsub.subscribe(queue.wake_channel(self.broker.client, self.queue_name))
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
