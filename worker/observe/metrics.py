"""Prometheus metrics: what the workers and the relay count, and the registries they serve.

The workers' counters and histograms are written in prometheus_client's multiprocess mode and
summed at scrape time (`worker.observe.processes`). The relay is one process: its counters
are read from `Relay.stats` and its backlog gauges from Postgres (`worker.observe.backlog`).

Nothing here runs at import time; every metric is created by whoever builds a registry.
No label carries an endpoint or tenant id (cardinality).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import dramatiq
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
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.observe.backlog import BACKLOG_ERRORS, BACKLOG_GAUGES, BacklogCollector, PostgresBacklog
from worker.observe.processes import (
    TEMPORARY_PREFIX,
    MarkProcessDead,
    ProcessGroupCollector,
    children,
    clear_multiproc_dir,
    prepare_multiproc_dir,
)
from worker.policy.outcome import Kind
from worker.policy.retry import DEAD_REASONS

# The backlog and the worker processes have modules of their own; their names stay reachable
# here, where the entry points and the tests look for every metric.
__all__ = [
    "ATTEMPT_BUCKETS",
    "BACKLOG_ERRORS",
    "BACKLOG_GAUGES",
    "LATENCY_BUCKETS",
    "OUTCOMES",
    "SECRET_FAILURE",
    "TEMPORARY_PREFIX",
    "BacklogCollector",
    "DeliveryMetrics",
    "MarkProcessDead",
    "PostgresBacklog",
    "ProcessGroupCollector",
    "RelayCollector",
    "RelayCounts",
    "children",
    "clear_multiproc_dir",
    "prepare_multiproc_dir",
    "relay_registry",
    "worker_process_metrics",
    "worker_registry",
]

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

#: Gauge of the last attempt that could not be signed (unix time).
SECRET_FAILURE = "webhooks_secret_failure_timestamp_seconds"

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
        # Each outcome's child, looked up once: `labels` takes a lock and checks its values
        # on every call, which was half of what counting an attempt cost.
        self._attempts_by_outcome = {outcome: self.attempts.labels(outcome) for outcome in OUTCOMES}

    def attempt(self, outcome: str, seconds: float) -> None:
        """Count one recorded attempt."""
        child = self._attempts_by_outcome.get(outcome)
        if child is None:
            child = self._attempts_by_outcome[outcome] = self.attempts.labels(outcome)
        child.inc()
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


def worker_registry(path: str, root_pid: int) -> CollectorRegistry:
    """Return the registry of the workers' endpoint: every process's files, summed."""
    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    registry.register(ProcessGroupCollector(root_pid))
    return registry


# -- relay --------------------------------------------------------------------------------


class RelayCounts(Protocol):
    """What one relay has counted (`worker.relay.daemon.Stats`)."""

    events: int
    deliveries: int
    scheduled: int
    reenqueued: int
    probes: int
    #: dead letters counted, by reason, whoever filed them
    dead_letters: dict[str, int]
    #: events an endpoint's payload filter kept from it, by endpoint id
    filtered: dict[str, int]


class RelayCollector(Collector):
    """Export the counts of one relay (`Relay.stats`) as counters."""

    def __init__(self, stats: RelayCounts) -> None:
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
            self._filtered(),
        ]

    def _filtered(self) -> CounterMetricFamily:
        # By endpoint, as the issue asks: only endpoints with a filter that dropped an event
        # have a series, so the label's cardinality is that of filtered endpoints.
        family = CounterMetricFamily(
            "webhooks_events_filtered",
            "Events an endpoint's payload filter kept from it at fan-out (no delivery created).",
            labels=["endpoint"],
        )
        for endpoint, count in sorted(self.stats.filtered.items()):
            family.add_metric([endpoint], count)
        return family

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


def relay_registry(stats: RelayCounts, backlog: BacklogCollector) -> CollectorRegistry:
    """Return the registry of the relay's endpoint."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(stats))
    registry.register(backlog)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
