"""Metrics and health helpers that need no service: collectors, caching, deadlines."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import dramatiq
import psycopg
import pytest
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.observe import metrics
from worker.observe.health import Deadline
from worker.relay.daemon import Stats


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of a registry's exposition, keyed by name and sorted labels."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


GAUGES = {name: float(i) for i, name in enumerate(metrics.BACKLOG_GAUGES, start=1)}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_delivery_metrics_count_what_the_deliverer_reports() -> None:
    registry = CollectorRegistry()
    m = metrics.DeliveryMetrics(registry)
    m.attempt("failed", 0.2)
    m.attempt("succeeded", 0.05)
    m.succeeded(1.5)
    got = samples(registry)
    assert got[("webhooks_attempts_total", (("outcome", "failed"),))] == 1
    assert got[("webhooks_attempts_total", (("outcome", "succeeded"),))] == 1
    assert got[("webhooks_attempt_duration_seconds_count", ())] == 2
    assert got[("webhooks_attempt_duration_seconds_sum", ())] == pytest.approx(0.25)
    assert got[("webhooks_delivery_latency_seconds_count", ())] == 1


def test_delivery_metrics_show_how_full_the_engine_is() -> None:
    registry = CollectorRegistry()
    m = metrics.DeliveryMetrics(registry)
    m.held(40, 256)
    got = samples(registry)
    assert got[("webhooks_worker_deliveries_held", ())] == 40
    assert got[("webhooks_worker_concurrency", ())] == 256


def test_every_outcome_and_dead_letter_reason_is_exported_at_zero_before_it_happens() -> None:
    registry = CollectorRegistry()
    metrics.DeliveryMetrics(registry)
    got = samples(registry)
    for outcome in ("succeeded", "failed", "throttled", "gone"):
        assert got[("webhooks_attempts_total", (("outcome", outcome),))] == 0
    relay = samples(metrics.relay_registry(Stats(), metrics.BacklogCollector(lambda: GAUGES)))
    for reason in ("attempts_exhausted", "expired", "endpoint_disabled", "tenant_mismatch"):
        assert relay[("webhooks_dead_letters_total", (("reason", reason),))] == 0


def test_the_relay_exports_its_stats_as_counters() -> None:
    stats = Stats(events=7, deliveries=12, scheduled=3, reenqueued=1, probes=2)
    stats.dead_letters["expired"] = 4
    registry = metrics.relay_registry(stats, metrics.BacklogCollector(lambda: GAUGES))
    got = samples(registry)
    assert got[("webhooks_events_relayed_total", ())] == 7
    assert got[("webhooks_deliveries_created_total", ())] == 12
    assert got[("webhooks_deliveries_scheduled_total", ())] == 3
    assert got[("webhooks_deliveries_reenqueued_total", ())] == 1
    assert got[("webhooks_circuit_probes_total", ())] == 2
    assert got[("webhooks_dead_letters_total", (("reason", "expired"),))] == 4
    assert got[("webhooks_outbox_pending", ())] == GAUGES["webhooks_outbox_pending"]
    assert ("process_resident_memory_bytes", ()) in got
    stats.events += 1
    assert samples(registry)[("webhooks_events_relayed_total", ())] == 8


def test_backlog_is_read_once_per_ttl_however_many_scrapes() -> None:
    calls = []
    clock = Clock()

    def fetch() -> Mapping[str, float]:
        calls.append(clock.now)
        return GAUGES

    collector = metrics.BacklogCollector(fetch, ttl=2.0, clock=clock)
    for _ in range(5):
        assert collector.values() == GAUGES
    clock.now += 2.5
    collector.values()
    assert calls == [100.0, 102.5]


def test_a_failing_backlog_query_leaves_the_gauges_out_and_counts_an_error() -> None:
    clock = Clock()
    answers: list[Exception | Mapping[str, float]] = [
        psycopg.OperationalError("connection refused"),
        TimeoutError("backlog query took longer than 3s"),
        GAUGES,
    ]

    def fetch() -> Mapping[str, float]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    registry = CollectorRegistry()
    registry.register(metrics.BacklogCollector(fetch, ttl=2.0, clock=clock))
    got = samples(registry)
    assert not any(name in metrics.BACKLOG_GAUGES for name, _ in got)
    assert got[("webhooks_backlog_query_errors_total", ())] == 1
    assert samples(registry) == got  # the failure is cached too: Postgres is not asked again
    clock.now += 3
    assert samples(registry)[("webhooks_backlog_query_errors_total", ())] == 2
    clock.now += 3
    got = samples(registry)
    assert got[("webhooks_outbox_pending", ())] == GAUGES["webhooks_outbox_pending"]
    assert got[("webhooks_backlog_query_errors_total", ())] == 2


def test_registering_the_backlog_collector_does_not_query() -> None:
    def fetch() -> Mapping[str, float]:
        raise AssertionError("queried at registration")

    registry = CollectorRegistry()  # auto_describe: uses describe(), not collect()
    registry.register(metrics.BacklogCollector(fetch))


def test_deadline_gives_up_on_a_slow_call_and_does_not_queue_the_next_one() -> None:
    deadline = Deadline(0.2, "slow call")
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"took longer than 0\.2s"):
        deadline.call(lambda: release.wait(5))
    assert time.monotonic() - started < 1
    with pytest.raises(TimeoutError, match="still running"):
        deadline.call(lambda: 1)
    release.set()
    time.sleep(0.1)
    assert deadline.call(lambda: 42) == 42


def test_deadline_hands_the_call_s_exception_to_the_caller() -> None:
    def boom() -> None:
        raise psycopg.OperationalError("no route to host")

    with pytest.raises(psycopg.OperationalError, match="no route"):
        Deadline(1, "call").call(boom)


def test_process_metrics_of_a_worker_add_up_its_processes() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)  # let the child start its interpreter
        alone = {f.name: f.samples[0].value for f in ProcessCollector(registry=None).collect()}
        group = metrics.ProcessGroupCollector(root_pid=os.getpid())
        summed = {f.name: f.samples[0].value for f in group.collect()}
    finally:
        child.kill()
        child.wait(timeout=10)
    assert summed["process_resident_memory_bytes"] > alone["process_resident_memory_bytes"]
    assert summed["process_open_fds"] > alone["process_open_fds"]
    assert summed["process_start_time_seconds"] == alone["process_start_time_seconds"]
    assert summed["process_max_fds"] == alone["process_max_fds"]


def test_children_lists_the_processes_a_parent_started() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in metrics.children(os.getpid())
        assert child.pid not in metrics.children(child.pid)
    finally:
        child.kill()
        child.wait(timeout=10)


def test_a_configured_metrics_directory_is_emptied_of_a_previous_run_s_files(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "prom"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"stale")
    (folder / "README").write_text("not ours")
    assert metrics.prepare_multiproc_dir(str(folder)) == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["README"]
    created = tmp_path / "new" / "dir"
    assert metrics.prepare_multiproc_dir(str(created)) == str(created)
    assert created.is_dir()


def test_without_a_configured_directory_a_fresh_one_is_made_and_removed_at_the_end() -> None:
    path = Path(metrics.prepare_multiproc_dir(None))
    try:
        assert path.is_dir() and not any(path.iterdir())
        (path / "counter_1.db").write_bytes(b"x")
        metrics.clear_multiproc_dir(str(path))
        assert not path.exists()
    finally:
        if path.exists():
            for f in path.iterdir():
                f.unlink()
            path.rmdir()


def test_an_operator_s_directory_is_kept_when_the_files_are_cleared(tmp_path: Path) -> None:
    (tmp_path / "histogram_9.db").write_bytes(b"x")
    metrics.clear_multiproc_dir(str(tmp_path))
    assert tmp_path.is_dir() and not any(tmp_path.iterdir())


def test_a_stopping_worker_process_drops_its_live_gauges_and_keeps_its_counts(
    tmp_path: Path,
) -> None:
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
    assert metrics.worker_process_metrics(broker, None) is None
    assert isinstance(
        metrics.worker_process_metrics(broker, str(tmp_path)), metrics.DeliveryMetrics
    )
    (middleware,) = [m for m in broker.middleware if isinstance(m, metrics.MarkProcessDead)]
    mine, other = os.getpid(), os.getpid() + 1
    for name in (f"gauge_livesum_{mine}.db", f"gauge_livesum_{other}.db", f"counter_{mine}.db"):
        (tmp_path / name).write_bytes(b"")
    middleware.after_worker_shutdown(broker, dramatiq.Worker(broker))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"counter_{mine}.db",
        f"gauge_livesum_{other}.db",
    ]
