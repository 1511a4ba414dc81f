"""The real relay and workers export metrics that match what happened in Postgres."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from producers import Event, publish_many
from tests.daemons import (
    Daemon,
    Samples,
    base_env,
    eventually,
    free_port,
    get,
    scrape,
    wait_serving,
)
from tests.pipeline import Pipeline
from tests.receiver import Answer, Receiver, fail_first, ok, status
from worker.observe import metrics
from worker.observe.health import start_relay_endpoint
from worker.relay.daemon import Stats
from worker.settings import Settings

# How an attempt row's error kind maps to the outcome the workers count.
OUTCOME_OF_ATTEMPT = """
select case when error_kind is null then 'succeeded'
            when error_kind in ('throttled', 'gone') then error_kind
            else 'failed' end as outcome,
       count(*) as n
from webhooks.attempts group by 1
"""
MARKER = "payload-marker-7f3a"


def slow(_: int) -> Answer:
    time.sleep(0.3)  # keeps both worker processes busy
    return 200, {}, b"ok"


def throttle_once(n: int) -> Answer:
    return (429, {"retry-after": "1"}, b"") if n == 1 else (200, {}, b"")


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def per_process_attempts(folder: Path, scratch: Path) -> dict[int, float]:
    """Return each worker process's own attempt count, read from its metric file alone."""
    counts = {}
    for db in folder.glob("counter_*.db"):
        pid = int(db.stem.split("_")[1])
        alone = scratch / str(pid)
        alone.mkdir(parents=True)
        shutil.copy(db, alone / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        text = generate_latest(registry).decode()
        counts[pid] = sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "webhooks_attempts_total"
        )
    return counts


def stale_counter(folder: Path) -> None:
    """Leave a metric file as a killed earlier run would, counting 1000 attempts."""
    folder.mkdir()
    stale = MmapedDict(str(folder / "counter_999999.db"))  # type: ignore[no-untyped-call]
    key = mmap_key(
        "webhooks_attempts",
        "webhooks_attempts_total",
        ["outcome"],
        ["succeeded"],
        "HTTP attempts made, by outcome (succeeded, failed, throttled, gone).",
    )
    stale.write_value(key, 1000.0, 0.0)  # type: ignore[no-untyped-call]
    stale.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def pipeline(db_url: str, redis_url: str) -> Iterator[Pipeline]:
    p = Pipeline(db_url, redis_url)  # only its connection and helpers: no in-process daemons
    yield p
    p.stop()


def test_relay_and_worker_metrics_match_postgres(
    pipeline: Pipeline, receiver: Receiver, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    p = pipeline
    relay_port, worker_port = free_port(), free_port()
    prom = tmp_path / "prom"
    stale_counter(prom)
    env = base_env(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        WEBHOOKS_ALLOWED_NETWORKS="127.0.0.0/8",
        WEBHOOKS_RETRY_SCHEDULE="0s,200ms,400ms",
        WEBHOOKS_REQUEST_TIMEOUT="3s",
        WEBHOOKS_METRICS_PORT=str(worker_port),
        WEBHOOKS_RELAY_METRICS_PORT=str(relay_port),
        WEBHOOKS_LOG_FORMAT="json",
        PROMETHEUS_MULTIPROC_DIR=str(prom),
        # A small prefetch, so the 22 messages of one batch are shared by both processes
        # (at the default of 64 the first process to fetch takes them all).
        dramatiq_queue_prefetch="4",
    )
    secrets = []
    for path, answer in [
        ("/ok", ok),
        ("/flaky", fail_first(2)),
        ("/down", status(500)),
        ("/gone", status(410)),
        ("/busy", throttle_once),
        ("/slow", slow),
    ]:
        secrets.append(p.endpoint(receiver.on(path, answer), event_types=[f"t{path}"])[1])
    worker = Daemon(["worker", "--processes", "2", "--threads", "2"], env, tmp_path / "w.log")
    relay = Daemon(["relay"], env, tmp_path / "r.log")
    try:
        wait_serving(worker, worker_port)
        wait_serving(relay, relay_port)
        events = [("t/ok", 4), ("t/flaky", 2), ("t/down", 2), ("t/gone", 1), ("t/busy", 1)]
        events += [("t/slow", 12), ("t/nobody", 2)]
        with p.conn.transaction():  # one batch, so both worker processes get messages at once
            publish_many(
                p.conn,
                [Event(t, {"n": i, "note": MARKER}) for t, n in events for i in range(n)],
            )
        p.settle(timeout=90)

        def relay_counts_match() -> Samples:
            got = scrape(relay_port)
            assert value(got, "webhooks_events_relayed_total") == p.value(
                "select count(*) from webhooks.outbox"
            )
            assert value(got, "webhooks_deliveries_created_total") == p.value(
                "select count(*) from webhooks.deliveries"
            )
            return got

        relay_counts_match()
        assert p.value("select count(*) from webhooks.outbox") == 24

        def worker_counts_match() -> Samples:
            got = scrape(worker_port)
            rows = {r["outcome"]: r["n"] for r in p.rows(OUTCOME_OF_ATTEMPT)}
            assert set(rows) == {"succeeded", "failed", "throttled", "gone"}
            for outcome in ("succeeded", "failed", "throttled", "gone"):
                assert value(got, "webhooks_attempts_total", outcome=outcome) == rows[outcome]
            assert value(got, "webhooks_attempt_duration_seconds_count") == sum(rows.values())
            assert value(got, "webhooks_attempt_duration_seconds_sum") == pytest.approx(
                p.value("select sum(duration_seconds) from webhooks.attempts"), rel=1e-6
            )
            succeeded = p.value("select count(*) from webhooks.deliveries where status='succeeded'")
            assert value(got, "webhooks_delivery_latency_seconds_count") == succeeded
            latency = p.value(
                "select sum(extract(epoch from finished_at - event_created_at))::float"
                " from webhooks.deliveries where status = 'succeeded'"
            )
            # Measured by the worker just before it records the success.
            assert value(got, "webhooks_delivery_latency_seconds_sum") == pytest.approx(
                latency, abs=0.05 * succeeded
            )
            return got

        worker_metrics = eventually(worker_counts_match)
        assert value(worker_metrics, "process_resident_memory_bytes") > 0
        assert value(worker_metrics, "process_cpu_seconds_total") > 0

        def gauges_match() -> None:
            got = scrape(relay_port)
            assert value(got, "webhooks_outbox_pending") == 0
            assert value(got, "webhooks_outbox_oldest_age_seconds") == 0
            assert value(got, "webhooks_deliveries_pending") == 0
            assert value(got, "webhooks_deliveries_due_oldest_age_seconds") == 0
            assert value(got, "webhooks_dead_letters_current") == 3
            assert value(got, "webhooks_endpoints_disabled") == 1
            # /down failed enough to open its circuit (it stays open: nothing left to probe).
            assert value(got, "webhooks_endpoints_circuit_open") == p.value(
                "select count(*) from webhooks.endpoints"
                " where enabled and circuit_open_until is not null"
            )
            # Counted by the relay, whoever filed them (here: workers, and the disable a 410
            # caused).
            dead = {
                r["reason"]: r["n"]
                for r in p.rows(
                    "select reason, count(*) as n from webhooks.dead_letters group by 1"
                )
            }
            assert dead == {"attempts_exhausted": 2, "endpoint_disabled": 1}
            for reason in ("attempts_exhausted", "endpoint_disabled", "expired"):
                assert value(got, "webhooks_dead_letters_total", reason=reason) == dead.get(
                    reason, 0
                )
            assert value(got, "webhooks_backlog_query_errors_total") == 0
            assert value(got, "process_resident_memory_bytes") > 0

        # The gauges are cached for two seconds; dead letters are counted every ten.
        eventually(gauges_match, timeout=25)

        # Both worker processes delivered, and the endpoint summed their files.
        spread = per_process_attempts(prom, tmp_path / "scratch")
        assert len([n for n in spread.values() if n > 0]) >= 2, spread
        assert 999999 not in spread  # the stale file was removed at start
        assert sum(spread.values()) == sum(
            value(worker_metrics, "webhooks_attempts_total", outcome=o)
            for o in ("succeeded", "failed", "throttled", "gone")
        )
        for port in (relay_port, worker_port):
            assert get(port, "/healthz") == (200, "ok\n")
            assert get(port, "/readyz") == (200, "ready\n")
            assert get(port, "/nope")[0] == 404
    finally:
        worker_status = worker.stop()
        relay_status = relay.stop()
    assert (worker_status, relay_status) == (0, 0), worker.output() + relay.output()
    assert not list(prom.glob("*.db"))  # the endpoint process cleared them at exit
    attempts = p.value("select count(*) from webhooks.attempts")
    check_logs(worker.output(), relay.output(), secrets, attempts)


def check_logs(worker_log: str, relay_log: str, secrets: list[str], attempts: int) -> None:
    """Every attempt is counted in a batch line, each one that did not succeed has its own
    line with the ids an operator needs, and no line has a payload or a secret."""
    lines = [json.loads(line) for line in worker_log.splitlines() if line.startswith("{")]
    batches = [line for line in lines if line["message"] == "recorded batch"]
    assert sum(line["attempts"] for line in batches) == attempts
    succeeded = sum(line.get("succeed", 0) for line in batches)
    outcomes = [line for line in lines if line["message"].startswith("delivery ")]
    assert len(outcomes) == attempts - succeeded > 0
    assert all(line["message"] != "delivery succeed" for line in outcomes)  # DEBUG only
    for line in outcomes:
        assert {"event_id", "delivery_id", "endpoint_id", "attempt", "status", "duration"} <= set(
            line
        ), line
    assert Counter(line["outcome"] for line in outcomes)["gone"] == 1
    relay_lines = [json.loads(line) for line in relay_log.splitlines() if line.startswith("{")]
    batches = [line for line in relay_lines if line["message"] == "relayed batch"]
    assert sum(line["events"] for line in batches) == 24
    assert all({"events", "deliveries", "seconds"} <= set(line) for line in batches)
    for text in (worker_log, relay_log):
        assert MARKER not in text
        for secret in secrets:
            assert secret not in text and secret.removeprefix("whsec_") not in text


# -- the backlog gauges, on their own ---------------------------------------------------


def test_backlog_gauges_count_what_postgres_holds(pipeline: Pipeline) -> None:
    p = pipeline
    live, _ = p.endpoint("http://127.0.0.1:9/live")
    off, _ = p.endpoint("http://127.0.0.1:9/off")
    p.registry.disable(off, "test")
    first, second, third = (p.publish("a.b", {}) for _ in range(3))  # none relayed
    p.conn.execute(
        "update webhooks.outbox set created_at = now() - interval '90 seconds' where id = %s",
        [first],
    )

    def delivery(event: str, endpoint: str, due_in: str) -> int:
        row = p.rows(
            "insert into webhooks.deliveries (tenant_id, event_id, endpoint_id,"
            " event_created_at, next_attempt_at)"
            " values ('default', %s, %s, now(), now() + %s::interval) returning id",
            event,
            endpoint,
            due_in,
        )
        return int(row[0]["id"])

    delivery(first, live, "-40 seconds")  # due, not yet enqueued
    delivery(second, live, "1 hour")  # waiting for its retry
    dead = [delivery(second, off, "0 seconds"), delivery(third, off, "0 seconds")]
    p.conn.execute(
        "update webhooks.deliveries set status = 'dead', dead_reason = 'expired'"
        " where id = any(%s)",
        [dead],
    )
    p.conn.execute(
        "update webhooks.dead_letters set replayed_at = now() where delivery_id = %s", [dead[0]]
    )

    got = metrics.PostgresBacklog(p.settings.require_database_url()).read()

    assert set(got) == set(metrics.BACKLOG_GAUGES)
    assert got["webhooks_outbox_pending"] == 3
    assert 89 <= got["webhooks_outbox_oldest_age_seconds"] < 120
    assert got["webhooks_deliveries_pending"] == 2
    assert 39 <= got["webhooks_deliveries_due_oldest_age_seconds"] < 70
    assert got["webhooks_dead_letters_current"] == 1
    assert got["webhooks_endpoints_disabled"] == 1


def test_a_hung_database_never_hangs_a_scrape_of_the_relay(db_url: str, redis_url: str) -> None:
    settings = Settings(database_url=db_url, redis_url=redis_url, relay_metrics_port=free_port())
    stats = Stats(events=5)
    endpoint = start_relay_endpoint(settings, stats)
    blocker = psycopg.connect(db_url)
    try:
        assert value(scrape(endpoint.port), "webhooks_outbox_pending") == 0
        time.sleep(2.1)  # past the cache
        blocker.execute("lock table webhooks.deliveries in access exclusive mode")
        started = time.monotonic()
        got = scrape(endpoint.port)
        assert time.monotonic() - started < 4
        assert ("webhooks_outbox_pending", ()) not in got  # absent, not stale
        assert value(got, "webhooks_backlog_query_errors_total") == 1
        assert value(got, "webhooks_events_relayed_total") == 5  # the rest still served
        blocker.rollback()
        time.sleep(2.1)
        got = scrape(endpoint.port)
        assert value(got, "webhooks_deliveries_pending") == 0
        assert value(got, "webhooks_backlog_query_errors_total") == 1
    finally:
        blocker.close()
        endpoint.close()


def test_an_unreachable_database_leaves_the_gauges_out_quickly(redis_url: str) -> None:
    dead_db = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    settings = Settings(database_url=dead_db, redis_url=redis_url, relay_metrics_port=free_port())
    endpoint = start_relay_endpoint(settings, Stats())
    try:
        started = time.monotonic()
        got = scrape(endpoint.port)
        assert time.monotonic() - started < 4
        assert not any(name in metrics.BACKLOG_GAUGES for name, _ in got)
        assert value(got, "webhooks_backlog_query_errors_total") == 1
        status_code, reason = get(endpoint.port, "/readyz")
        assert status_code == 503 and reason.startswith("database unavailable:")
    finally:
        endpoint.close()
