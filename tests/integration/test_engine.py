"""The delivery engine: many requests in flight per process, few Postgres connections, batches.

Real Postgres, Redis and HTTP receiver; the engine is driven through Dramatiq (the pipeline)
or, for what Dramatiq cannot arrange on demand, handed messages directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.pipeline import Pipeline, fan_out, wait_idle
from tests.receiver import Answer, Receiver, hold_until
from worker.engine.actors import build_engine
from worker.policy.window import START

WORKER_CONNECTIONS = (
    "select count(*) from pg_stat_activity"
    " where application_name = 'webhooks-worker' and datname = current_database()"
)


def test_one_process_holds_its_concurrency_in_flight_on_at_most_three_connections(
    on_broker: Callable[..., Pipeline], receiver: Receiver, gate: threading.Event
) -> None:
    # Two Dramatiq threads, 40 slots. Each endpoint's first answers come at once, widening
    # its window (`worker.policy.window`) to half the slots; every later request is held
    # open by the receiver until the test has counted them, so the count is exact and no
    # timing is asserted.
    p = on_broker(request_timeout=60.0)
    warm = 20 - START  # answers that widen a window from START to 20

    def warm_then_hold(n: int) -> Answer:
        return (200, {}, b"ok") if n <= warm else hold_until(gate)(n)

    for path in ("/a", "/b"):
        p.endpoint(receiver.on(path, warm_then_hold))
    for i in range(40):
        p.publish("order.paid", {"i": i})
    p.start_relay()
    p.start_worker(threads=2, concurrency=40)

    receiver.wait_for("/a", warm + 20)
    receiver.wait_for("/b", warm + 20)
    time.sleep(0.3)  # room for a 41st request in flight, which must not come
    assert len(receiver.requests) == 2 * warm + 40
    assert p.value(WORKER_CONNECTIONS) <= 3
    gate.set()
    p.settle(timeout=60)
    assert p.value("select count(*) from webhooks.attempts") == 80
    assert p.value("select count(*) from webhooks.deliveries where status = 'succeeded'") == 80


def test_duplicate_messages_in_one_batch_make_one_attempt(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver
) -> None:
    # Guarantee 5 inside one claim statement: the same message twice, and a stale one.
    p = make_pipeline()
    p.endpoint(receiver.url("/a"))
    event_id = p.publish("order.paid", {"n": 1})
    [(delivery_id, message_id)] = fan_out(p)
    engine = build_engine(p.settings, concurrency=8)
    engine.start()
    try:
        for _ in range(3):
            engine.submit(delivery_id, message_id)
        engine.submit(delivery_id, "00000000-0000-0000-0000-000000000000")
        wait_idle(engine)
    finally:
        engine.close()
    assert [r.headers["webhook-id"] for r in receiver.to("/a")] == [event_id]
    assert p.value("select count(*) from webhooks.attempts") == 1
    assert p.value("select status from webhooks.deliveries") == "succeeded"


def test_a_burst_is_sent_and_recorded_with_every_attempt_once(
    on_broker: Callable[..., Pipeline], receiver: Receiver
) -> None:
    # Hundreds handed over at once: the claims and the records go in batches; each delivery
    # still gets exactly one attempt row with its state change (guarantee 4).
    p = on_broker()
    p.endpoint(receiver.url("/a"))
    p.endpoint(receiver.on("/fail", lambda _: (500, {}, b"no")))
    for i in range(150):
        p.publish("order.paid", {"i": i})
    handed = fan_out(p)
    engine = build_engine(p.settings, concurrency=400)
    engine.start()
    try:
        for delivery_id, message_id in handed:
            engine.submit(delivery_id, message_id)
        wait_idle(engine)
    finally:
        engine.close()
    rows: list[dict[str, Any]] = p.rows(
        "select d.status, d.attempts, count(a.id) as recorded, min(a.number) as number"
        " from webhooks.deliveries d left join webhooks.attempts a on a.delivery_id = d.id"
        " group by d.id"
    )
    assert len(rows) == 300
    assert {(r["attempts"], r["recorded"], r["number"]) for r in rows} == {(1, 1, 1)}
    assert sorted({r["status"] for r in rows}) == ["pending", "succeeded"]
    assert len(receiver.to("/a")) == 150 and len(receiver.to("/fail")) == 150
    failing = p.value("select count(*) from webhooks.endpoints where failing_since is not null")
    assert failing == 1


def test_close_finishes_what_the_engine_holds(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver
) -> None:
    # A graceful stop (SIGTERM) waits for the requests in flight and records them.
    p = make_pipeline()

    def slow(_: int) -> Answer:
        time.sleep(0.3)
        return 200, {}, b"ok"

    p.endpoint(receiver.on("/slow", slow))
    for i in range(20):
        p.publish("order.paid", {"i": i})
    handed = fan_out(p)
    engine = build_engine(p.settings, concurrency=64)
    engine.start()
    for delivery_id, message_id in handed:
        engine.submit(delivery_id, message_id)
    engine.close()
    assert p.value("select count(*) from webhooks.deliveries where status = 'succeeded'") == 20
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit(*handed[0])


def test_a_rate_limit_spreads_requests_and_spends_no_attempt(
    on_broker: Callable[..., Pipeline], receiver: Receiver
) -> None:
    # Twenty deliveries at 5 a second: with hundreds of slots they would all leave at once;
    # the limit defers the rest, which costs them no attempt.
    p = on_broker()
    p.endpoint(receiver.url("/limited"), rate_limit=5)
    for i in range(20):
        p.publish("order.paid", {"i": i})
    p.start_relay(lease=1.0)
    p.start_worker(concurrency=64)
    p.settle(timeout=60)
    per_second: dict[int, int] = {}
    for request in receiver.to("/limited"):
        per_second[int(request.at)] = per_second.get(int(request.at), 0) + 1
    assert max(per_second.values()) <= 7  # 5 a second, give or take a window's edge
    rows = p.rows("select attempts, spent, status from webhooks.deliveries")
    assert {(r["attempts"], r["spent"], r["status"]) for r in rows} == {(1, 1, "succeeded")}


def test_an_open_circuit_defers_without_attempts(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver
) -> None:
    # A failing endpoint: the first results open its circuit (5 consecutive failures), after
    # which its deliveries wait out the cooldown instead of spending their three attempts.
    p = make_pipeline(retry_schedule=(0, 0.2, 0.4))
    p.endpoint(receiver.on("/down", lambda _: (500, {}, b"down")))
    for i in range(10):
        p.publish("order.paid", {"i": i})
    p.start_relay(lease=1.0)
    p.start_worker(concurrency=64)
    receiver.wait_for("/down", 10)
    time.sleep(2.0)  # without the breaker, all 30 attempts would be over by now
    sent = len(receiver.to("/down"))
    assert sent < 30
    attempts = p.value("select sum(attempts) from webhooks.deliveries")
    assert attempts == sent  # every request recorded; deferrals recorded none
    assert p.value("select count(*) from webhooks.deliveries where status = 'pending'") > 0
    assert p.value("select sum(spent) from webhooks.deliveries") == sent


def test_stopping_the_dramatiq_worker_records_what_its_engine_holds(
    on_broker: Callable[..., Pipeline], receiver: Receiver
) -> None:
    # SIGTERM's path: Dramatiq stops its threads, then the engine finishes the requests it
    # has in flight and records them before the process exits.
    p = on_broker()

    def slow(_: int) -> Answer:
        time.sleep(0.5)
        return 200, {}, b"ok"

    p.endpoint(receiver.on("/slow", slow))
    for i in range(20):
        p.publish("order.paid", {"i": i})
    p.start_relay()
    worker = p.start_worker(concurrency=64)
    receiver.wait_for("/slow", 20)
    worker.stop()
    assert p.value("select count(*) from webhooks.deliveries where status = 'succeeded'") == 20
    assert p.value("select count(*) from webhooks.attempts") == 20
