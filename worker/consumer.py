"""A Dramatiq Redis broker whose idle consumers wake when the relay enqueues.

Stock Dramatiq consumers poll an empty queue with a backoff (5-10 ms after one empty poll,
doubling up to the worker timeout), and that sleep is most of a delivery's latency at low
load. These consumers wait on the Redis channel `worker.queue.enqueue` publishes to with each
batch instead, and poll again as soon as a wake-up arrives. The backoff stays the longest
wait, so a lost wake-up, or a channel that cannot be reached, costs no more than the stock
consumer's sleep: the wake-up is a hint, the queue stays the only source of work.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff

from worker import queue

log = logging.getLogger("webhooks.worker")


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

    def __next__(self) -> Any:
        message = super().__next__()  # type: ignore[no-untyped-call]
        if message is not None:
            self.waits = 0
            return message
        self._idle()
        return None

    def _idle(self) -> None:
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
        super().close()
