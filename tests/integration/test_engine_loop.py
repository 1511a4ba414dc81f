"""The engine's loop over an in-memory sender: claim, send, settle, record, without sockets.

Postgres is real (the guarantees live in its statements); the HTTP side is `FakeSender`,
scripted per test, so each case is fast and exact: what the receiver would have seen, what
was recorded. The end-to-end engine tests over a real receiver are `test_engine.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import standardwebhooks

from tests.fakes import FakeSender, Reply
from tests.pipeline import Pipeline, fan_out, wait_idle
from worker.app import App
from worker.engine.engine import Engine
from worker.settings import Settings

URL = "http://127.0.0.1:9/hooks"

ATTEMPTS = (
    "select a.number, a.trigger, a.status_code, a.error_kind, a.error, a.response_body"
    " from webhooks.attempts a order by a.id"
)


@pytest.fixture
def p(db_url: str) -> Iterator[Pipeline]:
    # Messages are handed to the engine directly: no queue. A RabbitMQ broker URL has the
    # engine count rate limits in Postgres, so no Redis is reached either.
    pipeline = Pipeline(db_url, "redis://127.0.0.1:1/0", broker_url="amqp://127.0.0.1:1/")
    yield pipeline
    pipeline.stop()


def engine_over(settings: Settings, sender: FakeSender, concurrency: int = 64) -> Engine:
    """Return a started engine that sends through `sender`."""
    engine = App(settings).engine(concurrency=concurrency, sender=sender)
    engine.start()
    return engine


def run(p: Pipeline, sender: FakeSender, concurrency: int = 64) -> list[tuple[int, str]]:
    """Hand every published event's deliveries to an engine over `sender`, wait, close."""
    handed = fan_out(p)
    engine = engine_over(p.settings, sender, concurrency)
    try:
        for delivery_id, message_id in handed:
            engine.submit(delivery_id, message_id)
        wait_idle(engine)
    finally:
        engine.close()
    return handed


def test_a_2xx_settles_the_delivery_with_one_attempt_signed_for_the_receiver(
    p: Pipeline,
) -> None:
    _, secret = p.endpoint(URL)
    event_id = p.publish("order.paid", {"n": 1})
    sender = FakeSender(Reply(200, body=b"thanks"))

    run(p, sender)

    [sent] = sender.requests
    assert sent.url == URL and sent.headers["webhook-id"] == event_id
    standardwebhooks.Webhook(secret).verify(sent.body, sent.headers)
    assert sent.max_body == 16384
    assert p.rows(ATTEMPTS) == [
        {
            "number": 1,
            "trigger": "scheduled",
            "status_code": 200,
            "error_kind": None,
            "error": None,
            "response_body": "thanks",
        }
    ]
    row = p.rows("select status, attempts, last_status_code from webhooks.deliveries")
    assert row == [{"status": "succeeded", "attempts": 1, "last_status_code": 200}]


def test_a_500_schedules_a_retry_and_records_the_attempt(p: Pipeline) -> None:
    p.endpoint(URL)
    p.publish("order.paid", {"n": 1})
    before = datetime.now(UTC)

    run(p, FakeSender(Reply(500, body=b"down")))

    [attempt] = p.rows(ATTEMPTS)
    assert (attempt["status_code"], attempt["response_body"]) == (500, "down")
    [delivery] = p.rows("select status, attempts, next_attempt_at from webhooks.deliveries")
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
    assert delivery["next_attempt_at"] > before


def test_a_sender_that_times_out_is_classified_and_recorded(p: Pipeline) -> None:
    p.endpoint(URL)
    p.publish("order.paid", {"n": 1})

    run(p, FakeSender(TimeoutError()))

    [attempt] = p.rows(ATTEMPTS)
    assert attempt["status_code"] is None and attempt["response_body"] is None
    assert (attempt["error_kind"], attempt["error"]) == (
        "timeout",
        "timed out waiting for the response",
    )
    assert p.value("select status from webhooks.deliveries") == "pending"
    assert p.value("select last_error from webhooks.deliveries") == attempt["error"]


def test_deliveries_handed_over_together_are_sent_concurrently_each_attempted_once(
    p: Pipeline,
) -> None:
    # Two endpoints, 25 deliveries each: under the 32 slots (half of 64) an endpoint not yet
    # heard from may hold, so none is put back by the slow-endpoint gate.
    for path in ("/a", "/b"):
        p.endpoint(URL.replace("/hooks", path))
    for i in range(25):
        p.publish("order.paid", {"i": i})
    sender = FakeSender(then=Reply(200, delay=0.05))

    handed = run(p, sender, concurrency=64)

    assert len(handed) == 50
    assert sender.most_in_flight > 1
    assert sorted(r.headers["webhook-id"] for r in sender.requests) == sorted(
        r["event_id"] for r in p.rows("select event_id::text from webhooks.deliveries")
    )
    recorded = p.rows(
        "select d.status, d.attempts, count(a.id) as recorded from webhooks.deliveries d"
        " left join webhooks.attempts a on a.delivery_id = d.id group by d.id"
    )
    assert len(recorded) == 50
    assert {(r["status"], r["attempts"], r["recorded"]) for r in recorded} == {("succeeded", 1, 1)}


def test_an_endpoint_not_yet_heard_from_holds_at_most_half_the_slots(p: Pipeline) -> None:
    # The rest are put back for a second or two without spending an attempt, so a receiver
    # that hangs cannot take every slot before its first timeout reveals it.
    p.endpoint(URL)
    for i in range(10):
        p.publish("order.paid", {"i": i})
    sender = FakeSender(then=Reply(200, delay=0.2))

    run(p, sender, concurrency=8)

    assert len(sender.requests) == 4 and sender.most_in_flight == 4
    rows = p.rows("select status, attempts, spent from webhooks.deliveries")
    assert (
        sorted((r["status"], r["attempts"], r["spent"]) for r in rows)
        == [("pending", 0, 0)] * 6 + [("succeeded", 1, 1)] * 4
    )


def test_close_finishes_and_records_what_was_handed_over(p: Pipeline) -> None:
    p.endpoint(URL)
    for i in range(20):
        p.publish("order.paid", {"i": i})
    handed = fan_out(p)
    sender = FakeSender(then=Reply(200, delay=0.2))
    engine = engine_over(p.settings, sender)
    for delivery_id, message_id in handed:
        engine.submit(delivery_id, message_id)

    engine.close()

    assert len(sender.requests) == 20 and sender.closed
    assert p.value("select count(*) from webhooks.attempts") == 20
    assert p.value("select count(*) from webhooks.deliveries where status = 'succeeded'") == 20


def ordered_key(p: Pipeline, events: int) -> list[str]:
    """Publish ``events`` events of one ordering key to an ordered endpoint."""
    p.endpoint(URL, ordered=True)
    return [
        p.publish("invoice.updated", {"n": i}, ordering_key="invoice-42") for i in range(events)
    ]


def test_an_ordered_key_waits_for_the_delivery_before_it_even_when_each_has_a_message(
    p: Pipeline,
) -> None:
    # A race handed out a message for every delivery of the key (a second relay, a stale
    # message): the claim's gate holds the later ones until the one before them succeeded.
    ids = ordered_key(p, 3)
    fan_out(p)
    handed = [
        (r["id"], r["message_id"])
        for r in p.rows(
            "update webhooks.deliveries set message_id = gen_random_uuid(), order_wait = false"
            " returning id, message_id::text"
        )
    ]
    sender = FakeSender(Reply(200, delay=0.05))
    engine = engine_over(p.settings, sender)
    try:
        for delivery_id, message_id in handed:
            engine.submit(delivery_id, message_id)
        p.wait_until(lambda: len(sender.requests) == 3, what="the three sent")
        wait_idle(engine)
    finally:
        engine.close()
    assert [r.headers["webhook-id"] for r in sender.requests] == ids
    assert sender.most_in_flight == 1
    assert p.value("select count(*) from webhooks.deliveries where status = 'succeeded'") == 3
    # Each was attempted once: the ones held back spent no attempt.
    assert p.value("select sum(attempts) from webhooks.deliveries") == 3


def test_an_ordered_delivery_waits_for_an_earlier_event_of_its_key_not_yet_fanned_out(
    p: Pipeline,
) -> None:
    first, second = ordered_key(p, 2)
    fan_out(p)
    # The first event is back in the outbox, unrelayed (another relay's batch, not committed
    # yet); the second has a message.
    p.rows("delete from webhooks.deliveries where event_id = %s returning id", first)
    p.rows("update webhooks.outbox set relayed_at = null where id = %s returning id", first)
    [(delivery_id, message_id)] = [
        (r["id"], r["message_id"])
        for r in p.rows(
            "update webhooks.deliveries set message_id = gen_random_uuid(), order_wait = false"
            " returning id, message_id::text"
        )
    ]
    sender = FakeSender(Reply(200))
    engine = engine_over(p.settings, sender)
    try:
        engine.submit(delivery_id, message_id)
        p.wait_until(
            lambda: p.value("select order_wait from webhooks.deliveries") is True,
            what="the second put back to wait",
        )
        assert sender.requests == []
        # The first is fanned out now: it goes first (its key's later delivery waits), and
        # its success wakes the second.
        for d, m in fan_out(p):
            engine.submit(d, m)
        p.wait_until(lambda: len(sender.requests) == 2, what="both sent")
        wait_idle(engine)
    finally:
        engine.close()
    assert [r.headers["webhook-id"] for r in sender.requests] == [first, second]
