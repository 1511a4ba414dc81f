"""Fixtures of the fault tests: a Redis of each test's own, the daemons, a receiver.

Each test gets a fresh database (the shared `db_url` fixture), its own redis-server on a
free loopback port (so killing or flushing it touches nobody else), and a `Cluster` that
starts `webhooks relay` and `webhooks worker` as real processes and stops every one of them
when the test ends, whatever happened. The RabbitMQ variants run on a RabbitMQ node the
session starts for itself (`rabbit_node`), since they stop and start it. Every test is
bounded in time (`time_limit`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.conftest import purge_rabbitmq
from tests.faults.harness import BrokerControl, Cluster, RedisServer
from tests.faults.receivers import Sink, running_sink
from tests.services import NodeDidNotStart, RabbitNode

#: How long the session's RabbitMQ node took to start (reported at the end of the run).
NODE_STARTED_IN: list[float] = []

#: Seconds a fault test may run unless it sets @pytest.mark.time_limit(seconds).
DEFAULT_TIME_LIMIT = 240


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "time_limit(seconds): fail a test running longer")


class TimeLimitExceeded(Exception):
    """Raised in the test when it runs past its time limit."""


@pytest.fixture(autouse=True)
def time_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test (and so run every cleanup) once it runs past its limit."""
    marker = request.node.get_closest_marker("time_limit")
    seconds = float(marker.args[0]) if marker else DEFAULT_TIME_LIMIT

    def expired(signum: int, frame: FrameType | None) -> None:
        raise TimeLimitExceeded(f"{request.node.nodeid} ran past its {seconds:g}s limit")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for seconds in NODE_STARTED_IN:
        terminalreporter.write_line(f"private RabbitMQ node started in {seconds:.1f} s")


@pytest.fixture(scope="session")
def rabbit_node() -> Iterator[RabbitNode]:
    """Start a RabbitMQ node of the session's own, which the fault tests may restart.

    Without RabbitMQ installed the RabbitMQ variants are skipped, except under CI.
    """
    node = RabbitNode()
    try:
        node.start()
    except NodeDidNotStart as exc:
        node.stop()
        why = f"cannot start a RabbitMQ node of the suite's own: {exc}"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    NODE_STARTED_IN.append(node.started_in)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(db_url: str, redis_server: RedisServer, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(db_url, redis_server.url(), tmp_path)
    try:
        yield made
    finally:
        made.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the quorum-queue variant for the tests marked `quorum` only.

    A representative subset (a worker killed mid-batch; the broker flushed, restarted,
    dropping connections): the rest behaves on a quorum queue as on a classic one, and each
    RabbitMQ fault test costs 20-60 s.
    """
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        variant = callspec.params.get("any_cluster") if callspec is not None else None
        if variant == "rabbitmq-quorum" and item.get_closest_marker("quorum") is None:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(params=["redis", "rabbitmq", "rabbitmq-quorum"])
def any_cluster(
    request: pytest.FixtureRequest, db_url: str, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Cluster]:
    """Return a `Cluster` on each broker in turn: the test body runs once per broker.

    Redis is the test's own server; RabbitMQ is the session's own node, with the queue
    deleted first.
    """
    if request.param == "redis":
        made = Cluster(db_url, redis_server.url(), tmp_path)
    else:
        url = request.getfixturevalue("rabbit_node").url
        purge_rabbitmq(url)
        queue_type = "quorum" if request.param == "rabbitmq-quorum" else "classic"
        made = Cluster(
            db_url, redis_server.url(), tmp_path, broker_url=url, rabbitmq_queue_type=queue_type
        )
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def broker(
    request: pytest.FixtureRequest, any_cluster: Cluster, redis_server: RedisServer
) -> BrokerControl:
    """Return the controls of `any_cluster`'s broker."""
    if any_cluster.broker_url.startswith("amqp"):
        return BrokerControl(any_cluster, redis_server, request.getfixturevalue("rabbit_node"))
    return BrokerControl(any_cluster, redis_server)


@pytest.fixture
def sink() -> Iterator[Sink]:
    with running_sink() as s:
        yield s
