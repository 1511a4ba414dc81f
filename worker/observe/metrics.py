"""Prometheus metrics: what the relay and the workers count, and the backlog in Postgres.

Workers run as several Dramatiq processes, so their counters and histograms use
prometheus_client's multiprocess mode: `webhooks worker` points PROMETHEUS_MULTIPROC_DIR at a
directory emptied at start, each process writes its own files there, and one endpoint
process (`worker.observe.health.serve_workers`) sums them at scrape time. The relay is one process:
its counters are read from `Relay.stats` and its backlog gauges from one cached, time-bounded
query, so a slow or failing database never hangs a scrape.

Nothing here runs at import time; every metric is created by whoever builds a registry.
No label carries an endpoint or tenant id (cardinality).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import dramatiq
import psycopg
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg.rows import dict_row

from worker.errors import WebhooksError
from worker.outages import Outage
from worker.policy.outcome import Kind
from worker.policy.retry import DEAD_REASONS
from worker.relay.daemon import Stats

log = logging.getLogger("webhooks.metrics")

#: Attempt outcomes and dead-letter reasons are exported at zero before they first happen,
#: so rates and alerts see a series from the start.
OUTCOMES = tuple(kind.value for kind in Kind)

#: Attempts end within the request deadline (30 s by default).
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
#: From an immediate success to the last retry of the default schedule (about 3 days).
LATENCY_BUCKETS = (
    *(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    *(300, 900, 1800, 3600, 7200, 18000, 43200, 86400, 172800, 345600),
)

# One query for every backlog gauge. Each part reads a partial index (outbox_unrelayed,
# deliveries_due, dead_letters_current) or the small endpoints table.
BACKLOG_SQL = """
with outbox as (
    select count(*) as pending, min(created_at) as oldest
    from webhooks.outbox
    where relayed_at is null
), deliveries as (
    select count(*) as pending,
           min(next_attempt_at) filter (where next_attempt_at <= now()) as oldest_due
    from webhooks.deliveries
    where status = 'pending'
)
select outbox.pending as outbox_pending,
       coalesce(greatest(extract(epoch from now() - outbox.oldest), 0), 0)
           as outbox_oldest_age_seconds,
       deliveries.pending as deliveries_pending,
       coalesce(greatest(extract(epoch from now() - deliveries.oldest_due), 0), 0)
           as deliveries_due_oldest_age_seconds,
       (select count(*) from webhooks.dead_letters where replayed_at is null)
           as dead_letters_current,
       (select count(*) from webhooks.endpoints where not enabled) as endpoints_disabled,
       (select count(*) from webhooks.endpoints
         where circuit_open_until is not null and enabled) as endpoints_circuit_open
from outbox, deliveries
"""

#: The gauges the relay computes from BACKLOG_SQL, with their help text.
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
}
BACKLOG_ERRORS = "webhooks_backlog_query_errors"

#: Gauge of the last attempt that could not be signed (unix time).
SECRET_FAILURE = "webhooks_secret_failure_timestamp_seconds"

#: Name prefix of the temporary directory `webhooks worker` makes for its metric files.
TEMPORARY_PREFIX = "webhooks-metrics-"


# -- workers ------------------------------------------------------------------------------


class DeliveryMetrics:
    """Count attempts and successes: the `Observer` of an `Engine`.

    Without a registry the metrics are only written to this process's files in
    PROMETHEUS_MULTIPROC_DIR, which is how the worker processes use it.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.attempts = Counter(
            "webhooks_attempts",
            "HTTP attempts made, by outcome (succeeded, failed, throttled, gone).",
            ["outcome"],
            registry=registry,
        )
        self.attempt_duration = Histogram(
            "webhooks_attempt_duration_seconds",
            "Duration of one HTTP attempt, connection included.",
            buckets=ATTEMPT_BUCKETS,
            registry=registry,
        )
        self.delivery_latency = Histogram(
            "webhooks_delivery_latency_seconds",
            "Time from an event's creation to its delivery's first success.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # Summed over the live worker processes: held at concurrency means the engines are
        # full and messages wait in Redis (add processes, or concurrency for slow receivers).
        self.held_gauge = Gauge(
            "webhooks_worker_deliveries_held",
            "Deliveries the worker processes' engines hold (claiming, in flight, recording).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.concurrency_gauge = Gauge(
            "webhooks_worker_concurrency",
            "Deliveries the worker processes' engines may hold at once (--concurrency, summed).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # The newest over every process: the workers' /readyz reads it (`worker.observe.health`).
        self.secret_failure = Gauge(
            SECRET_FAILURE,
            "Unix time of the last attempt that failed because WEBHOOKS_SECRET_KEY could not"
            " open its endpoint's secret.",
            registry=registry,
            multiprocess_mode="max",
        )
        for outcome in OUTCOMES:
            self.attempts.labels(outcome)

    def attempt(self, outcome: str, seconds: float) -> None:
        """Count one recorded attempt."""
        self.attempts.labels(outcome).inc()
        self.attempt_duration.observe(seconds)

    def succeeded(self, latency: float) -> None:
        """Record the latency of a delivery that just succeeded."""
        self.delivery_latency.observe(max(0.0, latency))

    def held(self, count: int, capacity: int) -> None:
        """Record how many deliveries this process's engine holds, out of how many."""
        self.held_gauge.set(count)
        self.concurrency_gauge.set(capacity)

    def secret_failed(self) -> None:
        """Record that an attempt could not be signed (the key does not open its secret)."""
        self.secret_failure.set(time.time())


class MarkProcessDead(dramatiq.Middleware):
    """Drop a stopping worker process's live gauges from the multiprocess directory."""

    def __init__(self, path: str) -> None:
        self.path = path

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        prometheus_multiprocess.mark_process_dead(os.getpid(), self.path)  # type: ignore[no-untyped-call]


def worker_process_metrics(broker: dramatiq.Broker, path: str | None) -> DeliveryMetrics | None:
    """Return the metrics of one worker process writing to ``path`` (None: no metrics).

    Also drops the process's live gauges from ``path`` when its worker stops.
    """
    if not path:
        return None
    # Gone if the endpoint process of an earlier generation removed it (Dramatiq re-executes
    # itself on SIGHUP with the same environment).
    Path(path).mkdir(parents=True, exist_ok=True)
    broker.add_middleware(MarkProcessDead(path))
    return DeliveryMetrics()


def prepare_multiproc_dir(configured: str | None) -> str:
    """Return an empty directory for the worker processes' metric files.

    ``configured`` (an operator's PROMETHEUS_MULTIPROC_DIR) is created if missing and
    emptied of metric files, which a previous run may have left: their counts would
    otherwise be added to this run's. Without one, a fresh temporary directory is made.
    """
    try:
        if not configured:
            return tempfile.mkdtemp(prefix=TEMPORARY_PREFIX)
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return str(path)
    except OSError as exc:
        raise WebhooksError(
            f"PROMETHEUS_MULTIPROC_DIR: cannot prepare {configured or 'a temporary directory'}:"
            f" {exc.strerror or exc}"
        ) from exc


def clear_multiproc_dir(path: str) -> None:
    """Delete the metric files of a stopping `webhooks worker`.

    The directory goes too if `prepare_multiproc_dir` made it; an operator's stays.
    """
    folder = Path(path)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    if folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith(TEMPORARY_PREFIX):
        with contextlib.suppress(OSError):
            folder.rmdir()


def worker_registry(path: str, root_pid: int) -> CollectorRegistry:
    """Return the registry of the workers' endpoint: every process's files, summed."""
    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    registry.register(ProcessGroupCollector(root_pid))
    return registry


def children(pid: int, proc: str = "/proc") -> list[int]:
    """Return the ids of the processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            stat = Path(proc, name, "stat").read_bytes()
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(name))
    return found


class ProcessGroupCollector(Collector):
    """Export process_* metrics summed over a Dramatiq main process and its children.

    The worker processes, not the endpoint process serving the scrape, do the work; CPU,
    memory and file descriptors are therefore added up over the whole group. Start time and
    the file descriptor limit are the main process's.
    """

    _FROM_ROOT = ("process_start_time_seconds", "process_max_fds")

    def __init__(self, root_pid: int, proc: str = "/proc") -> None:
        self.root_pid = root_pid
        self.proc = proc

    def collect(self) -> Iterable[Metric]:
        totals: dict[str, Metric] = {}
        for pid in [self.root_pid, *children(self.root_pid, self.proc)]:
            one = ProcessCollector(pid=functools.partial(int, pid), proc=self.proc, registry=None)
            for family in one.collect():
                if not family.samples:
                    continue
                value = family.samples[0].value
                kept = totals.get(family.name)
                if kept is None:
                    cls = CounterMetricFamily if family.type == "counter" else GaugeMetricFamily
                    help_text = family.documentation
                    if family.name not in self._FROM_ROOT:
                        help_text += " Summed over the worker's processes."
                    totals[family.name] = cls(family.name, help_text, value=value)
                elif family.name not in self._FROM_ROOT:
                    sample = kept.samples[0]
                    kept.samples[0] = sample._replace(value=sample.value + value)
        return list(totals.values())


# -- relay --------------------------------------------------------------------------------


class RelayCollector(Collector):
    """Export the counts of one relay (`Relay.stats`) as counters."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self.stats
        return [
            CounterMetricFamily(
                "webhooks_events_relayed", "Outbox events fanned out by the relay.", stats.events
            ),
            CounterMetricFamily(
                "webhooks_deliveries_created",
                "Deliveries created by the relay (one per event and matching endpoint).",
                stats.deliveries,
            ),
            CounterMetricFamily(
                "webhooks_deliveries_scheduled",
                "Due deliveries (retries, deferrals) the relay's scheduler put on the queue.",
                stats.scheduled,
            ),
            CounterMetricFamily(
                "webhooks_deliveries_reenqueued",
                "Deliveries put back on the queue because Redis no longer held their message.",
                stats.reenqueued,
            ),
            CounterMetricFamily(
                "webhooks_circuit_probes",
                "Probes the relay's scheduler sent to endpoints whose circuit is open.",
                stats.probes,
            ),
            self._dead_letters(),
        ]

    def _dead_letters(self) -> CounterMetricFamily:
        family = CounterMetricFamily(
            "webhooks_dead_letters",
            "Deliveries that went to the dead letters, by reason, whoever filed them"
            " (counted by the relay).",
            labels=["reason"],
        )
        counts = self.stats.dead_letters
        for reason in sorted({*DEAD_REASONS, *counts}):
            family.add_metric([reason], counts.get(reason, 0))
        return family


class PostgresBacklog:
    """Read the backlog gauges with BACKLOG_SQL on a connection of its own.

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
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    def read(self) -> dict[str, float]:
        """Return each gauge's value; raise psycopg.Error when Postgres fails or is slow."""
        try:
            conn = self._connect()
            with conn.transaction():
                conn.execute(
                    "select set_config('statement_timeout', %s, true)",
                    [f"{round(self.statement_timeout * 1000)}ms"],
                )
                row = conn.execute(BACKLOG_SQL).fetchone()
        except psycopg.Error:
            self.close()  # a fresh connection next time
            raise
        assert row is not None
        return {f"webhooks_{name}": float(value) for name, value in row.items()}

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.database_url,
                autocommit=True,
                row_factory=dict_row,
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


def relay_registry(stats: Stats, backlog: BacklogCollector) -> CollectorRegistry:
    """Return the registry of the relay's endpoint."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(stats))
    registry.register(backlog)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
