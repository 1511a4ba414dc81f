"""Ordered delivery per key, through the real relay and worker processes.

The receiver checks the promise as requests arrive (`tests.ordering.OrderLog`): no event of a
key reaches an ordered endpoint before the previous event of that key was answered 2xx, or
died under WEBHOOKS_ORDERED_ON_DEATH=continue. Two worker processes at the engine's full
concurrency (256 each) race for the same keys while the receiver fails and times out at
random and the retry schedule runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers import Event
from tests.faults.harness import Cluster, metric
from tests.faults.receivers import Sink, running_sink
from tests.ordering import OrderLog, by_key, keyed_events

#: Retries close together and many: with 15% failures and 2% timeouts nothing dies.
MANY_QUICK_RETRIES = ",".join(["0s"] + ["100ms"] * 40)


@pytest.fixture
def sink() -> Iterator[Sink]:
    with running_sink() as s:
        yield s


def cluster(db_url: str, redis_url: str, tmp: Path, **kwargs: object) -> Cluster:
    return Cluster(db_url, redis_url, tmp, **kwargs)  # type: ignore[arg-type]


def test_each_key_is_delivered_in_order_under_failures_at_full_concurrency(
    db_url: str, redis_url: str, tmp_path: Path, sink: Sink
) -> None:
    # With 18% failures at this rate, five in a row come every few milliseconds: the circuit
    # would hold the endpoint open and probe it one request at a time. Off, so the keys race.
    circuit = {"WEBHOOKS_CIRCUIT_FAILURES": "0"}
    c = cluster(
        db_url,
        redis_url,
        tmp_path,
        schedule=MANY_QUICK_RETRIES,
        request_timeout="3s",
        extra_env=circuit,
    )
    try:
        log = OrderLog(fail=0.15, timeout=0.02, stall=3.5, seed=28)
        ep, secret = c.endpoint(sink.url("/ordered"), ordered=True)
        sink.route("/ordered", secret, log.policy)
        # An unordered endpoint of the same tenant gets the same events, in any order.
        _, plain = c.endpoint(sink.url("/plain"))
        sink.route("/plain", plain)
        events = keyed_events(keys=200, per_key=6)
        ids = c.publish(events)
        c.start_relay(lease="5s")
        for _ in range(2):
            c.start_worker(threads=8, processes=1, concurrency=256)
        c.wait_until(lambda: c.unfinished() == 0, 180, "every delivery finished")

        assert log.violations(by_key(events, ids)) == []
        statuses = c.rows("select status, count(*) as n from webhooks.deliveries group by 1")
        assert statuses == [{"status": "succeeded", "n": 2 * len(ids)}]
        assert {e for _, e in sink.ok() if _ == "/ordered"} == set(ids)
        retried = c.value(
            "select count(*) from webhooks.deliveries where endpoint_id = %s and attempts > 1",
            ep,
        )
        assert retried > 50  # the failures really happened, and were retried in order
        c.assert_attempts_consistent()
    finally:
        c.close()


def test_events_without_a_key_are_ordered_per_endpoint(
    db_url: str, redis_url: str, tmp_path: Path, sink: Sink
) -> None:
    c = cluster(db_url, redis_url, tmp_path, schedule=MANY_QUICK_RETRIES, request_timeout="1s")
    try:
        log = OrderLog(fail=0.2, seed=7)
        _, secret = c.endpoint(sink.url("/ordered"), ordered=True)
        sink.route("/ordered", secret, log.policy)
        events = [Event("order.updated", {"seq": i}) for i in range(40)]
        ids = c.publish(events)
        c.start_relay(lease="5s")
        c.start_worker(threads=8, concurrency=256)
        c.wait_until(lambda: c.unfinished() == 0, 120, "every delivery finished")
        assert log.violations([ids]) == []
        arrivals = [v.event_id for v in log.visits if v.status == 200]
        assert arrivals == ids
    finally:
        c.close()


def test_keys_stay_in_order_through_an_outage_the_circuit_holds(
    db_url: str, redis_url: str, tmp_path: Path, sink: Sink
) -> None:
    # The endpoint goes down: its circuit opens, waiting heads are parked behind it, one probe
    # per cooldown tries a head; when it heals, the heads go and each key follows in order.
    c = cluster(
        db_url,
        redis_url,
        tmp_path,
        schedule=MANY_QUICK_RETRIES,
        request_timeout="2s",
        extra_env={
            "WEBHOOKS_CIRCUIT_FAILURES": "3",
            "WEBHOOKS_CIRCUIT_COOLDOWN": "500ms",
            "WEBHOOKS_CIRCUIT_MAX_COOLDOWN": "1s",
        },
    )
    try:
        log = OrderLog(fail=0.05, seed=30, down=True)
        ep, secret = c.endpoint(sink.url("/ordered"), ordered=True)
        sink.route("/ordered", secret, log.policy)
        events = keyed_events(keys=50, per_key=4)
        ids = c.publish(events)
        c.start_relay(lease="5s")
        for _ in range(2):
            c.start_worker(threads=8, processes=1, concurrency=256)
        c.wait_until(
            lambda: c.value("select circuit_open_until is not null from webhooks.endpoints"),
            30,
            "the circuit open",
        )
        time.sleep(3.0)  # a few probes fail
        log.down = False
        c.wait_until(lambda: c.unfinished() == 0, 120, "every delivery finished")

        assert log.violations(by_key(events, ids)) == []
        assert c.value(
            "select count(*) from webhooks.deliveries where endpoint_id = %s and status ="
            " 'succeeded'",
            ep,
        ) == len(ids)
        c.assert_attempts_consistent()
        assert "circuit opened" in c.logs(400) and "circuit closed" in c.logs(400)
    finally:
        c.close()


def dead_head(c: Cluster, sink: Sink, log: OrderLog, per_key: int = 4) -> tuple[str, list[str]]:
    """Publish one key whose first event the receiver refuses until it dies."""
    ep, secret = c.endpoint(sink.url("/ordered"), ordered=True)
    sink.route("/ordered", secret, log.policy)
    ids = c.publish(
        Event("invoice.updated", {"seq": i}, ordering_key="invoice-42") for i in range(per_key)
    )
    log.refuse.add(ids[0])
    return ep, ids


def delivered(log: OrderLog) -> list[str]:
    with log.lock:
        return [v.event_id for v in log.visits if v.status == 200]


def test_a_dead_head_lets_its_key_go_on_and_says_it_broke_the_order(
    db_url: str, redis_url: str, tmp_path: Path, sink: Sink
) -> None:
    c = cluster(db_url, redis_url, tmp_path, schedule="0s,100ms,100ms")
    try:
        log = OrderLog()
        _, ids = dead_head(c, sink, log)
        c.start_relay(lease="5s")
        c.start_worker(threads=4, concurrency=256)
        c.wait_until(lambda: c.unfinished() == 0, 60, "every delivery finished")
        assert delivered(log) == ids[1:]
        assert log.violations([ids], dead=[ids[0]]) == []
        dead_id = c.value("select id from webhooks.deliveries where event_id = %s", ids[0])

        shown = json.loads(c.cli("dlq", "show", str(dead_id), "--json").stdout)
        assert shown["ordering_key"] == "invoice-42" and shown["order_broken"] is True
        assert "it broke the order" in c.cli("dlq", "show", str(dead_id)).stdout

        log.refuse.clear()
        replay = c.cli("dlq", "replay", "--id", str(dead_id))
        assert replay.returncode == 0, replay.stderr
        assert "1 of them arrive out of order" in replay.stdout
        c.wait_until(lambda: c.unfinished() == 0, 60, "the replay delivered")
        assert delivered(log) == [*ids[1:], ids[0]]
    finally:
        c.close()


def test_block_holds_the_key_until_its_dead_head_is_discarded(
    db_url: str, redis_url: str, tmp_path: Path, sink: Sink
) -> None:
    c = cluster(
        db_url,
        redis_url,
        tmp_path,
        schedule="0s,100ms,100ms",
        extra_env={"WEBHOOKS_ORDERED_ON_DEATH": "block"},
    )
    try:
        log = OrderLog()
        _, ids = dead_head(c, sink, log)
        relay = c.start_relay(lease="5s")
        c.start_worker(threads=4, concurrency=256)
        c.wait_until(
            lambda: c.value("select count(*) from webhooks.dead_letters") == 1, 60, "the head died"
        )
        time.sleep(7)  # longer than the relay's sweep for waiting deliveries (5 s)
        assert delivered(log) == []
        status = json.loads(c.cli("status", "--json").stdout)
        assert status["blocked_keys"] == 1 and status["behind_their_key"] == 3
        assert metric(relay.metrics_port, "webhooks_ordering_keys_blocked") == 1
        assert status["blocked"][0]["ordering_key"] == "invoice-42"
        assert "invoice-42" in c.cli("status").stdout

        dead_id = c.value("select id from webhooks.deliveries where event_id = %s", ids[0])
        discard = c.cli("dlq", "discard", "--id", str(dead_id))
        assert discard.returncode == 0, discard.stderr
        assert "discarded 1 dead letter; 1 ordering key(s) go on" in discard.stdout
        c.wait_until(lambda: c.unfinished() == 0, 60, "the key went on")
        assert delivered(log) == ids[1:]
        assert log.violations([ids], dead=[ids[0]]) == []
        assert json.loads(c.cli("dlq", "list", "--json").stdout) == []
        assert json.loads(c.cli("status", "--json").stdout)["blocked_keys"] == 0
    finally:
        c.close()


def test_block_lets_a_replayed_head_go_first(
    db_url: str, redis_url: str, tmp_path: Path, sink: Sink
) -> None:
    c = cluster(
        db_url,
        redis_url,
        tmp_path,
        schedule="0s,100ms,100ms",
        extra_env={"WEBHOOKS_ORDERED_ON_DEATH": "block"},
    )
    try:
        log = OrderLog()
        _, ids = dead_head(c, sink, log)
        c.start_relay(lease="5s")
        c.start_worker(threads=4, concurrency=256)
        c.wait_until(
            lambda: c.value("select count(*) from webhooks.dead_letters") == 1, 60, "the head died"
        )
        time.sleep(2)
        assert delivered(log) == []
        log.refuse.clear()
        dead_id = c.value("select id from webhooks.deliveries where event_id = %s", ids[0])
        replay = c.cli("dlq", "replay", "--id", str(dead_id))
        assert replay.returncode == 0 and "out of order" not in replay.stdout, replay.stdout
        c.wait_until(lambda: c.unfinished() == 0, 60, "the key went on")
        assert delivered(log) == ids
        assert log.violations([ids]) == []
    finally:
        c.close()
