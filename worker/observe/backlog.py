"""The relay's backlog gauges: read from Postgres by one cached, time-bounded query.

A slow or failing database never hangs a scrape: the query is bounded, its result (or its
failure) is cached for a moment, and a failed read leaves the gauges out rather than stale.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from typing import Any

import psycopg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.outages import Outage
from worker.store import metrics

log = logging.getLogger("webhooks.metrics")

#: The gauges the relay computes from `worker.store.metrics.backlog`, with their help text.
BACKLOG_GAUGES: dict[str, str] = {
    "webhooks_outbox_pending": "Events committed to the outbox and not yet relayed.",
    "webhooks_outbox_oldest_age_seconds": "Age of the oldest event not yet relayed (0: none).",
    "webhooks_deliveries_pending": "Deliveries not yet succeeded or dead.",
    "webhooks_deliveries_due_oldest_age_seconds": (
        "How long the most overdue pending delivery has been due without being enqueued (0: none)."
    ),
    "webhooks_dead_letters_current": "Dead letters not replayed.",
    "webhooks_endpoints_disabled": "Endpoints currently disabled.",
    "webhooks_endpoints_circuit_open": (
        "Enabled endpoints whose circuit is open: their deliveries wait for a probe to succeed."
    ),
    "webhooks_ordering_keys_blocked": (
        "Ordering keys whose later events wait behind a dead delivery, neither replayed nor"
        " discarded (WEBHOOKS_ORDERED_ON_DEATH=block)."
    ),
}
BACKLOG_ERRORS = "webhooks_backlog_query_errors"


class PostgresBacklog:
    """Read the backlog gauges (`worker.store.metrics.backlog`) on a connection of its own.

    Every read is bounded: the connection attempt by ``connect_timeout``, the query by a
    transaction-local statement_timeout (which works through PgBouncer in any mode), and a
    silent network by tcp_user_timeout.
    """

    def __init__(
        self, database_url: str, *, connect_timeout: int = 2, statement_timeout: float = 2.0
    ) -> None:
        self.database_url = database_url
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._conn: psycopg.Connection[Any] | None = None

    def read(self) -> dict[str, float]:
        """Return each gauge's value; raise psycopg.Error when Postgres fails or is slow."""
        try:
            row = metrics.backlog(self._connect(), self.statement_timeout)
        except psycopg.Error:
            self.close()  # a fresh connection next time
            raise
        return {f"webhooks_{name}": float(value) for name, value in asdict(row).items()}

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.database_url,
                autocommit=True,
                connect_timeout=self.connect_timeout,
                tcp_user_timeout=round((self.connect_timeout + self.statement_timeout) * 1000),
                fallback_application_name="webhooks-metrics",
            )
        return self._conn

    def close(self) -> None:
        """Close the connection (it reopens on the next read)."""
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


class BacklogCollector(Collector):
    """Export the backlog gauges, read by ``fetch`` at most once per ``ttl`` seconds.

    When ``fetch`` fails (or times out), the gauges are left out of the scrape rather than
    reported stale, and webhooks_backlog_query_errors_total counts the failure. Concurrent
    scrapes share one read; the failure is cached for ``ttl`` too, so a struggling database
    is not asked again at once.
    """

    def __init__(
        self,
        fetch: Callable[[], Mapping[str, float]],
        *,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch = fetch
        self.ttl = ttl
        self.clock = clock
        self.errors = 0
        self._lock = threading.Lock()
        self._values: Mapping[str, float] | None = None
        self._read_at: float | None = None
        self._outage = Outage("backlog query", log)

    def describe(self) -> Iterable[Metric]:
        # Names only: registering the collector must not query Postgres.
        return [*(GaugeMetricFamily(n, h) for n, h in BACKLOG_GAUGES.items()), self._errors()]

    def collect(self) -> Iterable[Metric]:
        values = self.values()
        families: list[Metric] = []
        if values is not None:
            families = [
                GaugeMetricFamily(name, help_text, value=values[name])
                for name, help_text in BACKLOG_GAUGES.items()
            ]
        return [*families, self._errors()]

    def values(self) -> Mapping[str, float] | None:
        """Return the cached values, reading them again once they are ``ttl`` old."""
        with self._lock:
            now = self.clock()
            if self._read_at is not None and now - self._read_at < self.ttl:
                return self._values
            try:
                self._values = self.fetch()
                self._outage.recovered()
            except (psycopg.Error, OSError) as exc:  # TimeoutError is an OSError
                self.errors += 1
                self._values = None
                self._outage.failed(exc)
            self._read_at = self.clock()
            return self._values

    def _errors(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            BACKLOG_ERRORS,
            "Scrapes whose backlog query failed or timed out (their backlog gauges are absent).",
            self.errors,
        )
