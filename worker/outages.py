"""Retry transient Postgres and Redis failures with backoff, logging each outage once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import redis
import tenacity

log = logging.getLogger("webhooks")

#: Failures of the infrastructure (not of a receiver) that are worth retrying.
TRANSIENT: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
)


def first_line(exc: BaseException) -> str:
    """Return the first line of an exception's message (or its type)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Outage:
    """Log an outage once when it starts and once when it ends, not once per retry."""

    def __init__(self, what: str, logger: logging.Logger = log) -> None:
        self.what = what
        self.logger = logger
        self.since: float | None = None
        self._lock = threading.Lock()

    def failed(self, exc: BaseException | None) -> None:
        """Record a failed try; log only the first of an outage."""
        with self._lock:
            if self.since is None:
                self.since = time.monotonic()
                reason = first_line(exc) if exc is not None else "unknown error"
                self.logger.warning("%s unavailable, retrying with backoff: %s", self.what, reason)

    def recovered(self) -> None:
        """Record a success; log the end of an outage if one was running."""
        with self._lock:
            if self.since is not None:
                self.logger.warning(
                    "%s available again after %.1fs", self.what, time.monotonic() - self.since
                )
                self.since = None


class ConsumerOutage(logging.Filter):
    """Turn Dramatiq's consumer reconnect loop into one outage: logged once, with backoff.

    Dramatiq's consumer thread logs two lines (CRITICAL, then INFO) on every failed
    reconnect, every 3 seconds, in every worker process. As a filter on its logger this
    drops them and reports the outage through `Outage` instead (once when it starts, once
    when it ends); `before_reconnect`, called by the broker's ``consume``, waits longer
    between reconnects as the outage goes on, and `connected` ends it.
    """

    #: Longest wait between two reconnects, Dramatiq's own 3 s included.
    MAX_WAIT = 30.0

    def __init__(self, what: str = "the broker", logger: logging.Logger = log) -> None:
        super().__init__()
        self.outage = Outage(f"{what} (worker consumer)", logger)
        self.failures = 0

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if message.startswith("Consumer encountered a connection error"):
            cause = record.args[0] if isinstance(record.args, tuple) and record.args else None
            self.failures += 1
            self.outage.failed(cause if isinstance(cause, BaseException) else None)
            return False
        return not (message.startswith("Restarting consumer") and self.outage.since is not None)

    def before_reconnect(self, restart_delay: float = 3.0) -> None:
        """Wait out the rest of the backoff before a reconnect (Dramatiq slept its own part).

        The wait ends early when the consumer thread is told to stop, so a worker stopped
        during an outage stops promptly.
        """
        if self.failures == 0:
            return
        wait = min(restart_delay * 2 ** (self.failures - 1), self.MAX_WAIT) - restart_delay
        thread = threading.current_thread()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and getattr(thread, "running", True):
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def connected(self) -> None:
        """Record that the consumer reached the broker again."""
        if self.outage.since is not None or self.failures:
            self.failures = 0
            self.outage.recovered()

    def watch(self, queue_name: str) -> None:
        """Filter the logger of the consumer thread of ``queue_name`` (idempotent)."""
        logging.getLogger(f"dramatiq.worker.ConsumerThread({queue_name})").addFilter(self)


def retrying(
    outage: Outage,
    *,
    stopping: threading.Event | None = None,
    on_retry: Callable[[], None] | None = None,
    max_wait: float = 10.0,
    max_attempts: int | None = None,
) -> tenacity.Retrying:
    """Return a tenacity policy: exponential backoff with jitter on TRANSIENT errors.

    It retries until ``stopping`` is set (daemons) or ``max_attempts`` is reached (work
    inside one delivery), sleeping on the event so a stop request interrupts a backoff.
    """

    def before_sleep(state: tenacity.RetryCallState) -> None:
        outage.failed(state.outcome.exception() if state.outcome else None)
        if on_retry is not None:
            on_retry()

    def should_stop(state: tenacity.RetryCallState) -> bool:
        if stopping is not None and stopping.is_set():
            return True
        return max_attempts is not None and state.attempt_number >= max_attempts

    sleep: Callable[[float], Any] = stopping.wait if stopping is not None else time.sleep
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TRANSIENT),
        wait=tenacity.wait_exponential(multiplier=0.2, max=max_wait) + tenacity.wait_random(0, 0.2),
        stop=should_stop,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
