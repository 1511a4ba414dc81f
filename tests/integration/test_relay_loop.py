"""The relay's fan-out and scheduler over its seams: a real Postgres, a queue in memory.

Fast and with no broker socket: the relay gets the connections `App.open` makes and a
`MemoryQueue`, so each test reads exactly what the relay enqueued.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.pipeline import Pipeline
from worker.app import App
from worker.queue.memory import MemoryQueue
from worker.relay.daemon import Relay, RelayConfig


@pytest.fixture
def p(db_url: str) -> Iterator[Pipeline]:
    # The broker URL is never dialled: the relays below enqueue into memory.
    pipeline = Pipeline(db_url, "memory://")
    yield pipeline
    pipeline.stop()


@pytest.fixture
def relay(p: Pipeline) -> Iterator[Any]:
    """Return a factory of relays over ``p``'s database and a fresh MemoryQueue each."""
    made: list[Relay] = []

    def make(**overrides: Any) -> Relay:
        app = App(p.settings)
        config = dataclasses.replace(RelayConfig.of(app.settings), **overrides)
        r = Relay(config, app.open, MemoryQueue(p.settings.queue_name))
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def memory(r: Relay) -> MemoryQueue:
    assert isinstance(r.queue, MemoryQueue)
    return r.queue


def messages(r: Relay) -> list[tuple[int, str]]:
    return sorted(memory(r).items)


def test_committed_events_become_one_delivery_and_one_message_per_matching_endpoint(
    p: Pipeline, relay: Any
) -> None:
    every, _ = p.endpoint("http://127.0.0.1:9/all")
    invoices, _ = p.endpoint("http://127.0.0.1:9/inv", event_types=["invoice.paid"])
    p.endpoint("http://127.0.0.1:9/acme", tenant_id="acme")
    paid = p.publish("invoice.paid", {"n": 1})
    created = p.publish("user.created", {"n": 2})

    r = relay()
    assert r.fan_out_once() == (2, 3)

    rows = p.rows(
        "select id, event_id::text, endpoint_id::text, message_id::text from webhooks.deliveries"
    )
    assert {(row["event_id"], row["endpoint_id"]) for row in rows} == {
        (paid, every),
        (paid, invoices),
        (created, every),
    }
    assert messages(r) == sorted((row["id"], row["message_id"]) for row in rows)
    assert (r.stats.events, r.stats.deliveries, r.stats.batches) == (2, 3, 1)


def test_a_batch_is_marked_relayed_and_the_rest_waits_for_the_next(p: Pipeline, relay: Any) -> None:
    p.endpoint("http://127.0.0.1:9/all")
    for i in range(5):
        p.publish("a.b", {"i": i})

    r = relay(batch_size=2)
    assert r.fan_out_once() == (2, 2)
    assert p.value("select count(*) from webhooks.outbox where relayed_at is not null") == 2
    assert len(messages(r)) == 2

    r.step()  # drains the outbox, a batch at a time
    assert p.value("select count(*) from webhooks.outbox where relayed_at is null") == 0
    assert (r.stats.events, r.stats.batches) == (5, 3)
    assert len(messages(r)) == 5


def test_a_due_retry_is_enqueued_by_the_scheduler(p: Pipeline, relay: Any) -> None:
    p.endpoint("http://127.0.0.1:9/all")
    p.publish("a.b", {})
    r = relay()
    r.fan_out_once()
    [(delivery, first)] = messages(r)
    # Its attempt failed and the writer set the retry: no message until it falls due.
    p.conn.execute(
        "update webhooks.deliveries set message_id = null, next_attempt_at = now() where id = %s",
        (delivery,),
    )
    memory(r).items.clear()  # lost: Redis flushed, or the push failed after the commit

    assert r.schedule_once() == 1
    [(again, message)] = messages(r)
    assert again == delivery
    assert message != first
    assert message == p.value("select message_id::text from webhooks.deliveries")
    assert (r.stats.scheduled, r.stats.reenqueued) == (1, 0)


def test_a_message_the_queue_lost_is_enqueued_again_after_its_lease(
    p: Pipeline, relay: Any
) -> None:
    p.endpoint("http://127.0.0.1:9/all")
    p.publish("a.b", {})
    r = relay(lease=0.3)
    r.fan_out_once()
    [queued] = messages(r)
    memory(r).items.clear()

    assert r.schedule_once() == 0  # within its lease: left to its message
    time.sleep(0.4)
    assert r.schedule_once() == 1
    assert messages(r) == [queued]  # the same message id: a worker's claim still matches it
    assert r.stats.reenqueued == 1


def test_a_message_the_queue_still_holds_is_not_enqueued_twice(p: Pipeline, relay: Any) -> None:
    p.endpoint("http://127.0.0.1:9/all")
    p.publish("a.b", {})
    r = relay(lease=0.3, recheck=300)
    r.fan_out_once()
    time.sleep(0.4)

    assert r.schedule_once() == 0
    assert len(messages(r)) == 1
    assert p.value(
        "select next_attempt_at > now() + interval '200 seconds' from webhooks.deliveries"
    )
    assert r.stats.reenqueued == 0
