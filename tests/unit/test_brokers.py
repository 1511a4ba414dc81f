"""The queue seam: URLs choose the broker, and what each broker answers without a server."""

from __future__ import annotations

import pytest
import redis

from worker.errors import ConfigError
from worker.outages import TRANSIENT
from worker.queue import BrokerError, as_queue, from_url, kind
from worker.queue.memory import MemoryQueue
from worker.queue.rabbitmq import RabbitQueue
from worker.queue.redis import RedisQueue


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://r:6379/0", RedisQueue),
        ("rediss://r:6380/1", RedisQueue),
        ("unix:///run/redis.sock", RedisQueue),
        ("amqp://guest:guest@mq:5672/%2F", RabbitQueue),
        ("amqps://mq/prod", RabbitQueue),
        ("memory://", MemoryQueue),
    ],
)
def test_the_url_scheme_chooses_the_broker(url: str, expected: type) -> None:
    queue = from_url(url, "q")
    assert isinstance(queue, expected) and queue.name == "q"


def test_another_scheme_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        kind("kafka://k:9092")
    assert caught.value.variable == "WEBHOOKS_BROKER_URL"


def test_rabbitmq_cannot_tell_a_waiting_message_so_every_expired_lease_is_reenqueued() -> None:
    # No connection is made: the answer does not depend on the server.
    queue = RabbitQueue("amqp://guest:guest@127.0.0.1:1/%2F")
    assert queue.may_be_pending(["a", "b"]) == [False, False]
    assert queue.lost_data() is False and queue.can_tell_pending is False


def test_an_unreachable_rabbitmq_is_a_transient_broker_error() -> None:
    queue = RabbitQueue("amqp://guest:guest@127.0.0.1:1/%2F")
    with pytest.raises(BrokerError) as caught:
        queue.enqueue([(1, "m")])
    assert str(caught.value).startswith("RabbitMQ:")
    assert isinstance(caught.value, TRANSIENT)  # the relay backs off and retries


def test_a_redis_client_is_still_accepted_where_a_queue_is_expected() -> None:
    client = redis.Redis.from_url("redis://127.0.0.1:1/0")
    queue = as_queue(client, "q")
    assert isinstance(queue, RedisQueue) and queue.client is client and queue.name == "q"
    memory = MemoryQueue()
    assert as_queue(memory) is memory


def test_the_memory_queue_keeps_what_was_enqueued_and_can_fail() -> None:
    queue = MemoryQueue()
    queue.enqueue([(1, "a"), (2, "b")])
    assert queue.depth() == 2 and queue.may_be_pending(["a", "z"]) == [True, False]
    queue.fail = True
    with pytest.raises(BrokerError):
        queue.enqueue([(3, "c")])


def test_a_quorum_queue_is_declared_with_x_queue_type_and_a_classic_one_as_dramatiq_does() -> None:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from worker.queue.rabbitmq import build_broker, queue_arguments

    stock = RabbitmqBroker.__new__(RabbitmqBroker)
    stock.max_priority = None
    assert queue_arguments("q") == stock._build_queue_arguments("q")  # type: ignore[no-untyped-call]
    assert queue_arguments("q", "quorum") == {**queue_arguments("q"), "x-queue-type": "quorum"}
    workers = build_broker("amqp://guest:guest@127.0.0.1:1/%2F", "quorum")
    assert workers._build_queue_arguments("q") == queue_arguments("q", "quorum")
    assert RabbitQueue("amqp://h/", "q", "quorum").arguments == queue_arguments("q", "quorum")


def _frame(kind: type, tag: int, multiple: bool = False) -> object:
    import types

    return types.SimpleNamespace(method=kind(delivery_tag=tag, multiple=multiple))


def test_a_batch_is_settled_only_when_every_tag_is_confirmed_and_counts_refusals() -> None:
    import pika.spec

    from worker.queue.rabbitmq import _Confirms

    woken: list[int] = []
    c = _Confirms()
    c.start(3)  # tags 1-3
    c.wake = lambda: woken.append(1)
    c.on_confirm(_frame(pika.spec.Basic.Ack, 2))
    assert c.waiting == 2 and not woken
    c.on_confirm(_frame(pika.spec.Basic.Ack, 1, multiple=True))
    assert c.waiting == 1 and not woken
    c.on_confirm(_frame(pika.spec.Basic.Nack, 3))
    assert c.waiting == 0 and c.refused == 1 and woken == [1]
    # The next batch's tags go on from there; a multiple nack refuses all it covers.
    c.start(4)  # tags 4-7
    c.on_confirm(_frame(pika.spec.Basic.Ack, 4))
    c.on_confirm(_frame(pika.spec.Basic.Nack, 6, multiple=True))
    assert c.waiting == 1 and c.refused == 2  # 5 and 6
    c.on_confirm(_frame(pika.spec.Basic.Ack, 7, multiple=True))
    assert c.waiting == 0 and c.refused == 2
