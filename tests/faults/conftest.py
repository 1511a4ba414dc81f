"""Fixtures of the fault tests: a Redis of each test's own, the daemons, a receiver.

Each test gets a fresh database (the shared `db_url` fixture), its own redis-server on a
free loopback port (so killing or flushing it touches nobody else), and a `Cluster` that
starts `webhooks relay` and `webhooks worker` as real processes and stops every one of them
when the test ends, whatever happened. Every test is bounded in time (`time_limit`).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.conftest import purge_rabbitmq
from tests.faults.harness import BrokerControl, Cluster, RedisServer
from tests.faults.receivers import Sink, running_sink

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


@pytest.fixture(params=["redis", "rabbitmq"])
def any_cluster(
    request: pytest.FixtureRequest, db_url: str, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Cluster]:
    """Return a `Cluster` on each broker in turn: the test body runs once per broker.

    Redis is the test's own server; RabbitMQ is the machine's, on this session's vhost with
    the queue deleted first (`tests.conftest.broker_url`).
    """
    if request.param == "redis":
        made = Cluster(db_url, redis_server.url(), tmp_path)
    else:
        url = request.getfixturevalue("rabbitmq_base_url")
        purge_rabbitmq(url)
        made = Cluster(db_url, redis_server.url(), tmp_path, broker_url=url)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def broker(any_cluster: Cluster, redis_server: RedisServer) -> BrokerControl:
    """Return the controls of `any_cluster`'s broker."""
    return BrokerControl(any_cluster, redis_server)


@pytest.fixture
def sink() -> Iterator[Sink]:
    with running_sink() as s:
        yield s
