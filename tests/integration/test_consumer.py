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


def test_a_dead_consumers_fetched_messages_go_back_on_the_queue_and_a_live_ones_stay(
    redis_url: str,
) -> None:
    # A worker killed with messages fetched and not yet handed over: Dramatiq would requeue
    # them after a minute of missing heartbeats, at the whim of its random maintenance. A
    # consumer beats before it fetches; once its liveness key expires, one call puts back
    # what it held (only what still exists) and forgets it.
    name = "abandon-test"
    client = redis.Redis.from_url(redis_url)
    brokers = [WakefulRedisBroker(url=redis_url, namespace=queue.NAMESPACE) for _ in range(2)]  # type: ignore[no-untyped-call]
    dead, live = (b.consume(name, prefetch=3, timeout=100) for b in brokers)
    dead_id, live_id = (b.broker_id for b in brokers)
    relay_side = queue.RedisQueue(redis_url, name)
    try:
        queue.enqueue(client, name, [(i, f"m-{i}") for i in range(6)])
        first = next(dead)  # type: ignore[call-overload]
        assert next(live) is not None  # type: ignore[call-overload]
        assert first.args == (0, "m-0")
        for consumer_id in (dead_id, live_id):
            assert client.scard(queue.acks_key(name, consumer_id)) == 3
            assert 0 < client.pttl(queue.alive_key(name, consumer_id)) <= queue.ALIVE_MS
        assert client.smembers(queue.consumers_key(name)) == {dead_id.encode(), live_id.encode()}
        assert client.llen(queue.queue_key(name)) == 0
        assert relay_side.requeue_abandoned() == 0  # both alive: nothing moves

        client.delete(queue.alive_key(name, dead_id))  # five seconds without a beat
        client.hdel(queue.messages_key(name), "m-2")  # acknowledged elsewhere meanwhile
        assert relay_side.requeue_abandoned() == 2
        assert sorted(client.lrange(queue.queue_key(name), 0, -1)) == [b"m-0", b"m-1"]
        assert relay_side.may_be_pending(["m-0", "m-1"]) == [True, True]
        assert not client.exists(queue.acks_key(name, dead_id))
        assert client.smembers(queue.consumers_key(name)) == {live_id.encode()}
        assert client.scard(queue.acks_key(name, live_id)) == 3
        assert relay_side.requeue_abandoned() == 0  # taken once, by whichever relay came first
    finally:
        for consumer in (dead, live):
            consumer.close()  # type: ignore[attr-defined]
        client.delete(
            queue.queue_key(name),
            queue.messages_key(name),
            queue.consumers_key(name),
            *(queue.acks_key(name, c) for c in (dead_id, live_id)),
            *(queue.alive_key(name, c) for c in (dead_id, live_id)),
        )
        relay_side.close()
        client.close()
        for broker in brokers:
            broker.close()
