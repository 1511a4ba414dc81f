"""RabbitMQ's publishing: a batch counts as enqueued only once every message is confirmed.

And the queue's type (WEBHOOKS_RABBITMQ_QUEUE_TYPE) is declared alike by the relay's
`RabbitQueue` and the workers' `RabbitmqBroker`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from producers import Event, publish_many
from tests.conftest import purge_rabbitmq
from tests.pipeline import Pipeline, Relay, RelayConfig, queued_messages
from worker.queue import BrokerError, BrokerRefused
from worker.queue.rabbitmq import RabbitQueue, build_broker


def _vhost(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)
    return done.stdout.decode()


@pytest.fixture
def rabbit_url(rabbitmq_base_url: str) -> Iterator[str]:
    """Return the session's RabbitMQ vhost with its `webhooks` queues deleted (again after)."""
    purge_rabbitmq(rabbitmq_base_url)
    yield rabbitmq_base_url
    purge_rabbitmq(rabbitmq_base_url)


@contextlib.contextmanager
def refusing_publishes(url: str, room: int) -> Iterator[None]:
    """Cap the queue at ``room`` messages; RabbitMQ nacks every publish beyond them."""
    definition = json.dumps({"max-length": room, "overflow": "reject-publish"})
    vhost = _vhost(url)
    _rabbitmqctl("set_policy", "-p", vhost, "--apply-to", "queues", "cap", "^webhooks$", definition)
    try:
        time.sleep(0.5)  # policies reach the queue asynchronously
        yield
    finally:
        _rabbitmqctl("clear_policy", "-p", vhost, "cap")


class DroppingProxy:
    """Forward TCP to RabbitMQ, and cut the connection after ``limit`` bytes from the client."""

    def __init__(self, upstream: tuple[str, int], limit: int) -> None:
        self.upstream = upstream
        self.limit = limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            client, _ = self.listener.accept()
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(server, client, None), daemon=True).start()
            self._pipe(client, server, self.limit)

    def _pipe(self, source: socket.socket, target: socket.socket, limit: int | None) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if limit is not None and sent + len(data) > limit:
                    target.sendall(data[: limit - sent])
                    self.cut.set()
                    break
                target.sendall(data)
                sent += len(data)
        for s in (source, target):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()


def test_a_batch_is_confirmed_whole_before_enqueue_returns(rabbit_url: str) -> None:
    queue = RabbitQueue(rabbit_url)
    try:
        queue.enqueue([(i, f"m{i}") for i in range(2500)])
        queue.enqueue([(i, f"n{i}") for i in range(3)])
        assert queue.depth() == 2503
    finally:
        queue.close()


def test_a_batch_with_a_nacked_message_raises(rabbit_url: str) -> None:
    queue = RabbitQueue(rabbit_url)
    try:
        queue.enqueue([(0, "first")])  # declares the queue the policy applies to
        with refusing_publishes(rabbit_url, room=5), pytest.raises(BrokerError) as caught:
            queue.enqueue([(i, f"m{i}") for i in range(20)])
        assert "refused" in str(caught.value)
        # The next batch goes out on a new channel once RabbitMQ accepts again.
        queue.enqueue([(99, "after")])
        assert queue.depth() == 5 + 1
    finally:
        queue.close()


def test_a_connection_dropped_mid_batch_raises_and_the_next_batch_reconnects(
    rabbit_url: str,
) -> None:
    parts = urlsplit(rabbit_url)
    proxy = DroppingProxy((parts.hostname or "127.0.0.1", parts.port or 5672), limit=30_000)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    queue = RabbitQueue(urlunsplit(parts._replace(netloc=netloc)))
    try:
        with pytest.raises(BrokerError):
            queue.enqueue([(i, f"m{i}") for i in range(2000)])
        assert proxy.cut.is_set()
    finally:
        queue.close()
        proxy.close()
    direct = RabbitQueue(rabbit_url)
    try:
        assert direct.depth() < 2000  # only part of the batch got there
    finally:
        direct.close()


def test_a_refused_batch_leaves_its_deliveries_to_the_lease_and_none_is_lost(
    make_pipeline: Callable[..., Pipeline], rabbit_url: str
) -> None:
    p = make_pipeline(broker_url=rabbit_url)
    p.endpoint("http://127.0.0.1:9/all")
    with psycopg.connect(p.settings.require_database_url()) as conn:
        publish_many(conn, [Event("a.b", {"i": i}) for i in range(30)])
        conn.commit()
    relay = Relay(
        RelayConfig(
            p.settings.require_database_url(),
            p.settings.redis_url,
            lease=0.5,
            broker_url=rabbit_url,
        )
    )
    try:
        relay.queue.enqueue([(0, "declare")])
        with refusing_publishes(rabbit_url, room=11), pytest.raises(BrokerError):
            relay.step()
        purge_rabbitmq(rabbit_url)
        time.sleep(0.6)  # the lease of the refused batch runs out
        relay.step()
    finally:
        relay.close()
    deliveries = p.rows("select id, message_id::text from webhooks.deliveries")
    assert len(deliveries) == 30
    assert sorted(queued_messages(p.settings)) == sorted(
        (d["id"], d["message_id"]) for d in deliveries
    )


def test_a_quorum_queue_is_declared_alike_by_the_relay_and_the_workers(rabbit_url: str) -> None:
    queue = RabbitQueue(rabbit_url, "webhooks", "quorum")
    try:
        queue.enqueue([(1, "m1")])
    finally:
        queue.close()
    listed = _rabbitmqctl(
        "list_queues",
        "-p",
        _vhost(rabbit_url),
        "--no-table-headers",
        "--quiet",
        "name",
        "type",
        "durable",
    )
    rows = {line.split()[0]: line.split()[1:] for line in listed.splitlines() if line.strip()}
    assert rows["webhooks"] == ["quorum", "true"]
    # The workers' broker declares the queue (and its delay queue) with the same arguments:
    # RabbitMQ would close the channel over any difference.
    broker = build_broker(rabbit_url, "quorum")
    try:
        broker.declare_queue("webhooks", ensure=True)
        assert broker.get_queue_message_counts("webhooks")[0] == 1
    finally:
        broker.close()


def test_a_queue_of_the_other_type_is_refused_naming_the_setting(rabbit_url: str) -> None:
    RabbitQueue(rabbit_url, "webhooks", "quorum").depth()
    classic = RabbitQueue(rabbit_url, "webhooks", "classic")
    try:
        with pytest.raises(BrokerRefused) as caught:
            classic.enqueue([(1, "m1")])
        assert "WEBHOOKS_RABBITMQ_QUEUE_TYPE" in str(caught.value)
    finally:
        classic.close()
