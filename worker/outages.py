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

    def __init__(self, what: str) -> None:
        super().__init__()
        self.outage = Outage(f"{what} (worker consumer)")
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
    stopping: threading.Event,
    on_retry: Callable[[], None] | None = None,
) -> tenacity.Retrying:
    """Return the daemons' policy: retry TRANSIENT errors with backoff until ``stopping``.

    It sleeps on the event, so a stop request interrupts a backoff; ``on_retry`` runs before
    each sleep (the relay drops its connections there).
    """

    def sleep(seconds: float) -> None:
        stopping.wait(seconds)

    return tenacity.Retrying(
        stop=lambda _: stopping.is_set(),
        sleep=sleep,
        **_policy(outage, on_retry, max_wait=10.0),
    )


def retrying_for(outage: Outage, patience: float) -> tenacity.AsyncRetrying:
    """Return the engine's policy: retry TRANSIENT errors with backoff for ``patience`` s.

    It gives up rather than sleep past ``patience`` seconds after the first try.
    """
    return tenacity.AsyncRetrying(
        stop=tenacity.stop_before_delay(patience), **_policy(outage, None, max_wait=5.0)
    )


def _policy(outage: Outage, on_retry: Callable[[], None] | None, max_wait: float) -> dict[str, Any]:
    """Return what both policies share: which errors, the jittered backoff, the outage log."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        outage.failed(state.outcome.exception() if state.outcome else None)
        if on_retry is not None:
            on_retry()

    return {
        "retry": tenacity.retry_if_exception_type(TRANSIENT),
        "wait": tenacity.wait_exponential(multiplier=0.2, max=max_wait)
        + tenacity.wait_random(0, 0.2),
        "before_sleep": before_sleep,
        "reraise": True,
    }
