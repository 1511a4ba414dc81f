"""Idle workers wake when the relay enqueues, instead of sleeping out their poll backoff."""

from __future__ import annotations

import threading
import time

import redis

from worker.queue import redis as queue
from worker.queue.redis import WakefulRedisBroker

IDLE_MS = 60_000  # the longest a consumer sleeps between polls in these tests


def consumer_after_long_idle(redis_url: str, name: str) -> tuple[WakefulRedisBroker, object]:
    broker = WakefulRedisBroker(url=redis_url, namespace=queue.NAMESPACE)  # type: ignore[no-untyped-call]
    consumer = broker.consume(name, prefetch=2, timeout=IDLE_MS)
    consumer.waits = 30  # type: ignore[attr-defined]  # long idle: the next sleep is 30-60 s
    return broker, consumer


def test_an_enqueue_wakes_an_idle_consumer_at_once(redis_url: str) -> None:
    broker, consumer = consumer_after_long_idle(redis_url, "wake-test")
    client = redis.Redis.from_url(redis_url)
    pusher = threading.Timer(0.5, queue.enqueue, args=(client, "wake-test", [(7, "m-7")]))
    started = time.monotonic()
    pusher.start()
    try:
        message = None
        while message is None and time.monotonic() - started < 25:
            message = next(consumer)  # type: ignore[call-overload]
        waited = time.monotonic() - started
    finally:
        pusher.cancel()
        consumer.close()  # type: ignore[attr-defined]
        client.close()
        broker.close()
    assert message is not None and message.args == (7, "m-7")
    # A sleeping stock consumer would poll again only after 30-60 s.
    assert waited < 25


def test_the_wake_up_channel_is_per_redis_database() -> None:
    # Channels span a server's databases; deployments sharing one must not wake each other.
    assert queue.wake_channel(redis.Redis(db=3), "webhooks") == "webhooks:wake:3:webhooks"
    assert queue.wake_channel(redis.Redis(db=4), "webhooks") == "webhooks:wake:4:webhooks"


def test_acknowledgements_are_sent_in_batches_and_forget_each_message(redis_url: str) -> None:
    # Acks collected from the worker threads reach Redis in one call: the message leaves
    # this worker's held set and the queue's message hash (nothing left for the scheduler to
    # find), and one the maintenance already took back is left alone.
    name = "ack-test"
    client = redis.Redis.from_url(redis_url)
    client.delete(queue.queue_key(name), queue.messages_key(name))
    broker = WakefulRedisBroker(url=redis_url, namespace=queue.NAMESPACE)  # type: ignore[no-untyped-call]
    consumer = broker.consume(name, prefetch=10, timeout=100)
    held = f"{queue.NAMESPACE}:__acks__.{broker.broker_id}.{name}"
    try:
        queue.enqueue(client, name, [(i, f"m-{i}") for i in range(5)])
        messages = [next(consumer) for _ in range(5)]  # type: ignore[call-overload]
        assert client.scard(held) == 5
        client.srem(held, "m-4")  # as if another worker's maintenance had requeued it
        for message in messages:
            consumer.ack(message)  # type: ignore[attr-defined]
        assert client.scard(held) == 4  # nothing sent yet: they wait for the batch
        consumer.close()  # type: ignore[attr-defined]
        assert client.scard(held) == 0
        assert client.hkeys(queue.messages_key(name)) == [b"m-4"]
    finally:
        client.delete(held, queue.queue_key(name), queue.messages_key(name))
        client.close()
        broker.close()
