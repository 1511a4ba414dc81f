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
