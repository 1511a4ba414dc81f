"""A worker whose broker goes away says so once, waits longer and longer, and says when it is back.

The Redis server here is one this test starts and stops itself: never the machine's own.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest

from worker.queue.redis import build_broker

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs the redis-server program"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """A redis-server of this test's own, which it may stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def wait_for(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_a_broker_outage_is_logged_once_then_its_end(
    own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    broker = build_broker(own_redis.url)
    queue = f"outage-{own_redis.port}"
    dramatiq.actor(actor_name="noop", queue_name=queue, broker=broker)(lambda: None)
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        time.sleep(0.5)
        own_redis.stop()
        # Dramatiq alone would log two lines every 3 s: here the first says it, once.
        assert wait_for(lambda: "unavailable" in caplog.text, 10)
        time.sleep(8)
        records = [r for r in caplog.records if r.name.startswith(("dramatiq", "webhooks"))]
        assert not [r for r in records if r.levelno >= logging.ERROR], caplog.text
        assert len([r for r in records if "unavailable" in r.getMessage()]) == 1
        assert not [r for r in records if "Restarting consumer" in r.getMessage()]
        own_redis.start()
        assert wait_for(lambda: "available again" in caplog.text, 40), caplog.text
    finally:
        worker.stop()
        broker.close()
