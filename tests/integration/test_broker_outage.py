"""A worker whose broker goes away says so once, waits longer and longer, and says when it is back.

The Redis server here is one this test starts and stops itself: never the machine's own.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest

from worker.observe.processes import children
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


def test_a_worker_stopped_during_an_outage_leaves_no_metrics_directory(
    db_url: str, tmp_path: Path
) -> None:
    import os
    import signal
    import sys

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    metrics_port = free_port()
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        WEBHOOKS_METRICS_PORT=str(metrics_port),
        TMPDIR=str(temporary),
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "--processes", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert wait_for(lambda: any(temporary.glob("webhooks-metrics-*")), 20)

    def serving() -> bool:
        try:
            socket.create_connection(("127.0.0.1", metrics_port), 0.2).close()
            return True
        except OSError:
            return False

    assert wait_for(serving, 60), "the metrics process did not start"
    time.sleep(1)  # in the outage
    # Dramatiq kills a child that gets a second signal while it stops (Ctrl-C twice, a
    # supervisor's stop repeated): the metrics process then never clears its files.
    for child in children(worker.pid):
        with contextlib.suppress(ProcessLookupError):  # one may be exiting already
            os.kill(child, signal.SIGKILL)
    time.sleep(0.5)
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=60)
    assert not list(temporary.glob("webhooks-metrics-*"))


def test_a_rabbitmq_that_accepts_and_never_answers_is_a_broker_error() -> None:
    # pika raised its own handshake timeout, which is no AMQPError: the relay's start-up
    # check and its pushes ended in a traceback instead of waiting the outage out.
    from worker.queue import BrokerError
    from worker.queue.rabbitmq import RabbitQueue

    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen()
        queue = RabbitQueue(f"amqp://guest:guest@127.0.0.1:{hole.getsockname()[1]}/")
        try:
            with pytest.raises(BrokerError):
                queue.ping()
        finally:
            queue.close()
