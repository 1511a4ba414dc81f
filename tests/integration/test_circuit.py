"""Endpoint circuits shared by every worker process, steered by operators; operational events."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

from producers import Event, publish_many
from tests.daemons import Daemon, base_env, free_port, scrape, wait_serving
from tests.helpers import run_cli
from tests.pipeline import Pipeline
from tests.receiver import Receiver, down_until, fail_each_event_first, ok, status


def publish(p: Pipeline, count: int, event_type: str = "order.paid") -> None:
    with p.conn.transaction():
        publish_many(p.conn, [Event(event_type, {"i": i}) for i in range(count)])


def by_status(p: Pipeline, endpoint_id: str) -> dict[str, int]:
    rows = p.rows(
        "select status, count(*) as n from webhooks.deliveries where endpoint_id = %s group by 1",
        endpoint_id,
    )
    return {r["status"]: r["n"] for r in rows}


def circuit(p: Pipeline, endpoint_id: str) -> dict[str, object]:
    rows = p.rows(
        "select consecutive_failures, circuit_open_until, circuit_cooldown"
        " from webhooks.endpoints where id = %s",
        endpoint_id,
    )
    return rows[0]


def test_with_the_breaker_off_every_event_runs_out_its_own_schedule(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver
) -> None:
    # An eventually consistent receiver fails the first two attempts of every event; an
    # always-failing one fails them all. Neither may hold the other events back.
    p = make_pipeline(circuit_failures=0, retry_schedule=(0, 0.2, 0.4, 0.6))
    late, _ = p.endpoint(receiver.on("/late", fail_each_event_first(receiver, "/late", 2)))
    never, _ = p.endpoint(receiver.on("/never", status(500)))
    publish(p, 200)
    p.start_relay(lease=2.0)
    p.start_worker(concurrency=64)
    p.settle(timeout=120)
    assert p.rows(
        "select status, attempts, count(*) as n from webhooks.deliveries"
        " where endpoint_id = %s group by 1, 2",
        late,
    ) == [{"status": "succeeded", "attempts": 3, "n": 200}]
    assert by_status(p, never) == {"dead": 200}
    assert (
        p.value(
            "select count(*) from webhooks.dead_letters"
            " where endpoint_id = %s and reason = 'attempts_exhausted' and attempts = 4",
            never,
        )
        == 200
    )
    assert p.value("select circuit_open_until from webhooks.endpoints where id = %s", never) is None


def test_one_circuit_across_worker_processes_bounds_requests_to_a_dead_endpoint(
    make_pipeline: Callable[..., Pipeline],
    receiver: Receiver,
    db_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    failures = 3
    p = make_pipeline()
    heal = {"at": time.time() + 3600.0}
    down, _ = p.endpoint(receiver.on("/down", down_until(lambda: heal["at"])))
    fine, _ = p.endpoint(receiver.on("/fine", ok))
    relay_port, worker_port = free_port(), free_port()
    env = base_env(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        WEBHOOKS_ALLOWED_NETWORKS="127.0.0.0/8",
        # Long enough that the delivery probing again and again does not run out.
        WEBHOOKS_RETRY_SCHEDULE="0s,100ms,200ms" + ",300ms" * 20,
        WEBHOOKS_CIRCUIT_FAILURES=str(failures),
        WEBHOOKS_CIRCUIT_COOLDOWN="2s",
        WEBHOOKS_CIRCUIT_MAX_COOLDOWN="4s",
        WEBHOOKS_METRICS_PORT=str(worker_port),
        WEBHOOKS_RELAY_METRICS_PORT=str(relay_port),
        dramatiq_queue_prefetch="2",
    )
    worker = Daemon(["worker", "--processes", "2", "--threads", "2"], env, tmp_path / "w.log")
    relay = Daemon(["relay"], env, tmp_path / "r.log")
    try:
        wait_serving(worker, worker_port)
        wait_serving(relay, relay_port)
        # Down for 20 s while events keep coming, four a second.
        started = time.time()
        heal["at"] = started + 20.0
        sent = 0
        while time.time() < heal["at"] - 0.5:
            publish(p, 2)
            sent += 2
            time.sleep(0.5)
        # Meanwhile the healthy endpoint got everything, promptly.
        assert len(receiver.wait_for("/fine", sent, timeout=10)) == sent
        while_down = [r for r in receiver.to("/down") if r.at < heal["at"]]
        probes = scrape(relay_port)[("webhooks_circuit_probes_total", ())]
        # One circuit for both processes: the failures that open it, then one probe at a time
        # (plus what was already in flight when it opened: one per process at this rate).
        # Two private circuits would have let through twice the failures and the probes.
        assert len(while_down) <= failures + probes + 2, (len(while_down), probes)
        assert probes <= 20 / 2 + 1
        # Healed: everything arrives within a few seconds of the next probe (at most 4 s on).
        p.settle(timeout=30)
        first_after = min(r.at for r in receiver.to("/down") if r.at >= heal["at"])
        assert first_after < heal["at"] + 4.0 + 1.5
        assert max(r.at for r in receiver.to("/down")) < first_after + 5.0
        assert by_status(p, down) == {"succeeded": sent}
        assert by_status(p, fine) == {"succeeded": sent}
        # Waiting spent no attempt: every delivery that never failed made exactly one.
        requests = len(receiver.to("/down"))
        assert (
            p.value("select sum(attempts) from webhooks.deliveries where endpoint_id = %s", down)
            == requests
        )
        assert p.value(
            "select count(*) from webhooks.deliveries where endpoint_id = %s and attempts = 1",
            down,
        ) >= sent - len(while_down)
        log = worker.output()
        assert "circuit opened" in log and "circuit closed" in log
        assert "circuit probe" in relay.output()
    finally:
        worker.stop()
        relay.stop()


def open_circuit(p: Pipeline, receiver: Receiver, answer: list[int]) -> str:
    """Register an endpoint answering ``answer[0]``; fail three events so its circuit opens,
    then publish ten more, which wait behind it."""
    endpoint_id, _ = p.endpoint(receiver.on("/ep", lambda _: (answer[0], {}, b"")))
    p.start_relay(lease=2.0)
    p.start_worker(concurrency=16)
    p.start_worker(concurrency=16)  # two engines: the circuit must hold for both
    publish(p, 3)
    p.wait_until(lambda: circuit(p, endpoint_id)["circuit_open_until"] is not None, 20)
    publish(p, 10)
    p.wait_until(
        lambda: p.value("select count(*) from webhooks.deliveries where circuit_wait") == 10,
        20,
        "deliveries parked behind the circuit",
    )
    return endpoint_id


@pytest.mark.parametrize(
    "command",
    [
        ["endpoint", "reset"],
        ["dlq", "replay", "--endpoint"],
        ["endpoint", "enable"],
    ],
)
def test_operator_commands_close_the_circuit_for_every_process_at_once(
    make_pipeline: Callable[..., Pipeline],
    receiver: Receiver,
    db_url: str,
    redis_url: str,
    command: list[str],
) -> None:
    # A cooldown of ten minutes: only the operator's command can bring the deliveries back.
    p = make_pipeline(retry_schedule=(0,), circuit_failures=3, circuit_cooldown=600.0)
    answer = [500]
    endpoint_id = open_circuit(p, receiver, answer)
    assert run_cli("endpoint", "show", endpoint_id, env={"DATABASE_URL": db_url}).stdout.count(
        "open until"
    )
    answer[0] = 200
    before = len(receiver.to("/ep"))
    if command == ["endpoint", "enable"]:
        # Enabling an endpoint closes its circuit: a new event goes at once.
        p.registry.disable(endpoint_id)
        assert circuit(p, endpoint_id)["circuit_open_until"] is not None
    result = run_cli(*command, endpoint_id, env={"DATABASE_URL": db_url, "REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    assert circuit(p, endpoint_id)["circuit_open_until"] is None
    assert circuit(p, endpoint_id)["consecutive_failures"] == 0
    if command == ["endpoint", "enable"]:
        publish(p, 1)
        receiver.wait_for("/ep", before + 1, timeout=5)
        return
    p.settle(timeout=10)  # the parked ones right away; the dead ones too when replayed
    replayed = 3 if command[0] == "dlq" else 0
    expected = {"succeeded": 10 + replayed, "dead": 3 - replayed}
    assert by_status(p, endpoint_id) == {k: v for k, v in expected.items() if v}


OPS_TYPES = [
    "webhooks.endpoint.disabled",
    "webhooks.endpoint.circuit_opened",
    "webhooks.endpoint.recovered",
    "webhooks.delivery.dead",
]


def operational_events(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """Return the events the operations endpoint received, each verified as a receiver would."""
    out = []
    for request in receiver.to("/ops"):
        standardwebhooks.Webhook(secret).verify(request.body, request.headers)
        out.append(json.loads(request.body))
    return out


def test_operational_events_reach_an_operations_endpoint_signed(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver
) -> None:
    p = make_pipeline(
        retry_schedule=(0, 0.1), circuit_failures=2, circuit_cooldown=1.0, circuit_max_cooldown=1.0
    )
    _, ops_secret = p.endpoint(
        receiver.on("/ops", ok), tenant_id="operations", event_types=OPS_TYPES
    )
    # The operations tenant's own endpoints are never the subject of an event (no loops).
    own, _ = p.endpoint(
        receiver.on("/own", status(410)), tenant_id="operations", event_types=["ops.check"]
    )
    answer = [500]
    flaky, _ = p.endpoint(
        receiver.on("/flaky", lambda _: (answer[0], {}, b"")), event_types=["order.paid"]
    )
    gone, _ = p.endpoint(receiver.on("/gone", status(410)), event_types=["user.left"])
    publish(p, 4)
    publish(p, 1, "user.left")
    p.publish("ops.check", {}, tenant_id="operations")
    p.start_relay()
    p.start_worker()

    def received(kind: str) -> list[dict[str, Any]]:
        return [e for e in operational_events(receiver, ops_secret) if e["type"] == kind]

    p.wait_until(lambda: received("webhooks.endpoint.circuit_opened"), 20, "circuit_opened")
    p.wait_until(lambda: received("webhooks.endpoint.disabled"), 20, "disabled")
    p.wait_until(lambda: received("webhooks.delivery.dead"), 20, "delivery.dead")
    answer[0] = 200
    publish(p, 1)  # waits behind the circuit until the next probe succeeds
    p.wait_until(lambda: received("webhooks.endpoint.recovered"), 20, "recovered")

    opened = received("webhooks.endpoint.circuit_opened")[0]["data"]
    assert opened["endpoint_id"] == flaky and opened["tenant_id"] == "default"
    assert opened["consecutive_failures"] >= 2  # a batch of four may fail at once
    disabled = [e["data"] for e in received("webhooks.endpoint.disabled")]
    assert [d["endpoint_id"] for d in disabled] == [gone]
    assert disabled[0]["reason"] == "receiver answered 410 Gone"
    recovered = received("webhooks.endpoint.recovered")[0]["data"]
    assert recovered["endpoint_id"] == flaky and recovered["circuit_was_open"] is True
    p.wait_until(
        lambda: (
            sum(e["data"]["count"] for e in received("webhooks.delivery.dead"))
            == p.value("select count(*) from webhooks.dead_letters where tenant_id = 'default'")
        ),
        20,
        "every dead letter announced",
    )
    for event in received("webhooks.delivery.dead"):
        data = event["data"]
        assert data["tenant_id"] == "default"
        assert data["reason"] in ("attempts_exhausted", "endpoint_disabled")
        for letter in data["dead_letters"]:
            assert set(letter) == {"delivery_id", "event_id", "event_type", "attempts", "died_at"}
    subjects = {e["data"]["endpoint_id"] for e in operational_events(receiver, ops_secret)}
    assert own not in subjects
    assert p.value("select enabled from webhooks.endpoints where id = %s", own) is False


def test_a_flood_of_dead_letters_is_announced_in_a_bounded_number_of_events(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver
) -> None:
    p = make_pipeline()
    _, ops_secret = p.endpoint(
        receiver.on("/ops", ok), tenant_id="operations", event_types=OPS_TYPES
    )
    dead_end, _ = p.endpoint(receiver.on("/dead", ok), event_types=["order.paid"])
    publish(p, 300)
    relay = p.start_relay(lease=600.0)  # no worker yet: 300 deliveries pending
    p.wait_until(lambda: relay.stats.deliveries == 300, 20, "fan-out")
    p.registry.disable(dead_end, "receiver retired")
    p.start_worker()
    p.wait_until(lambda: relay.stats.dead_letters.get("endpoint_disabled") == 300, 20, "counted")
    p.wait_until(lambda: len(receiver.to("/ops")) >= 2, 20, "announced")
    time.sleep(1.0)  # nothing more comes
    events = operational_events(receiver, ops_secret)
    assert [e["type"] for e in events].count("webhooks.endpoint.disabled") == 1
    dead = [e["data"] for e in events if e["type"] == "webhooks.delivery.dead"]
    assert len(dead) == 1
    assert dead[0]["count"] == 300 and len(dead[0]["dead_letters"]) == 100
    assert dead[0]["reason"] == "endpoint_disabled"
    assert len(events) == 2


def test_a_circuit_with_nothing_left_to_probe_closes_and_the_next_failure_reopens_it(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver
) -> None:
    p = make_pipeline(retry_schedule=(0,), circuit_failures=2, circuit_cooldown=0.5)
    endpoint_id, _ = p.endpoint(receiver.on("/down", status(500)))
    publish(p, 2)
    p.start_relay()
    p.start_worker()
    p.settle(timeout=20)  # both dead after their one attempt
    assert circuit(p, endpoint_id)["circuit_open_until"] is not None
    p.wait_until(
        lambda: circuit(p, endpoint_id)["circuit_open_until"] is None, 10, "the idle circuit"
    )
    assert circuit(p, endpoint_id)["consecutive_failures"] == 2
    publish(p, 1)
    p.wait_until(lambda: circuit(p, endpoint_id)["circuit_open_until"] is not None, 10, "reopened")
    assert len(receiver.to("/down")) == 3


def test_operational_events_are_published_whatever_the_payload_limit_says(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # WEBHOOKS_MAX_PAYLOAD_BYTES bounds what applications publish. The product's own events
    # are bounded by construction (MAX_LISTED); held to a low limit they once made
    # `endpoint disable` fail, and the relay's announcements with it.
    p = make_pipeline()
    _, ops_secret = p.endpoint(
        receiver.on("/ops", ok), tenant_id="operations", event_types=OPS_TYPES
    )
    dead_end, _ = p.endpoint(receiver.on("/dead", ok), event_types=["order.paid"])
    publish(p, 20)
    relay = p.start_relay(lease=600.0)
    p.wait_until(lambda: relay.stats.deliveries == 20, 20, "fan-out")
    monkeypatch.setenv("WEBHOOKS_MAX_PAYLOAD_BYTES", "64")
    p.registry.disable(dead_end, "receiver retired")
    p.start_worker()
    p.wait_until(lambda: len(receiver.to("/ops")) >= 2, 20, "announced")
    types = sorted(e["type"] for e in operational_events(receiver, ops_secret))
    assert types == ["webhooks.delivery.dead", "webhooks.endpoint.disabled"]


def test_an_operators_disable_announces_when_the_endpoint_was_disabled(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver
) -> None:
    # The engine's disables said when; an operator's said `"disabled_at": null`.
    p = make_pipeline()
    p.endpoint(receiver.on("/ops", ok), tenant_id="operations", event_types=OPS_TYPES)
    retired, _ = p.endpoint(receiver.on("/retired", ok), event_types=["order.paid"])
    p.registry.disable(retired, "receiver retired")
    payload = p.value(
        "select payload from webhooks.outbox where event_type = 'webhooks.endpoint.disabled'"
    )
    disabled_at = p.value("select disabled_at from webhooks.endpoints where id = %s", retired)
    assert payload["reason"] == "receiver retired"
    assert datetime.fromisoformat(payload["disabled_at"]) == disabled_at
