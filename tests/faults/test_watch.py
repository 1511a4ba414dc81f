"""The check that keeps the suite off shared services notices what it must.

`tests.conftest.shared_services_untouched` watches the machine's Redis and RabbitMQ for the
whole run; here the same `Watch` watches servers of the test's own, which it may stop.
"""

from __future__ import annotations

import redis

from tests.services import RabbitNode, RedisServer, Watch


def test_the_watch_notices_a_stopped_rabbitmq_node(rabbit_node: RabbitNode) -> None:
    watch = Watch(redis=frozenset(), rabbitmq_url=rabbit_node.url)
    watch.start()
    rabbit_node.stop_app()
    rabbit_node.start_app()
    (breach,) = watch.breaches()
    assert "RabbitMQ node it did not start was stopped" in breach


def test_the_watch_is_quiet_while_the_node_runs(rabbit_node: RabbitNode) -> None:
    watch = Watch(redis=frozenset(), rabbitmq_url=rabbit_node.url)
    watch.start()
    assert watch.breaches() == []


def test_the_watch_notices_a_connection_to_a_redis_not_ours(redis_server: RedisServer) -> None:
    watch = Watch(
        redis=frozenset({("127.0.0.1", redis_server.port)}), rabbitmq_url="amqp://127.0.0.1:1"
    )
    watch.start()
    client = redis.Redis.from_url(redis_server.url())
    client.ping()
    client.close()
    (breach,) = watch.breaches()
    assert f"127.0.0.1:{redis_server.port}" in breach
