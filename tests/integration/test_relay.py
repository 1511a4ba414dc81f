"""The relay: committed events become deliveries and queue messages, nothing lost."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
import pytest
import redis

from producers import Event, publish_many
from tests.pipeline import Pipeline, Relay, RelayConfig, lose_messages, queued_messages
from worker.queue import redis as queue


def queued(p: Pipeline) -> list[tuple[int, str]]:
    """Return the (delivery id, message id) of every message waiting in the queue."""
    return queued_messages(p.settings)


def relay_once(p: Pipeline, lease: float = 30.0) -> Relay:
    r = Relay(
        RelayConfig(
            p.settings.require_database_url(),
            p.settings.redis_url,
            lease=lease,
            broker_url=p.settings.broker_url,
            rabbitmq_queue_type=p.settings.rabbitmq_queue_type,
        )
    )
    r.step()
    r.close()
    return r


def test_committed_events_get_one_delivery_per_matching_endpoint(
    on_broker: Callable[..., Pipeline],
) -> None:
    p = on_broker()
    all_types, _ = p.endpoint("http://127.0.0.1:9/all")
    invoices, _ = p.endpoint("http://127.0.0.1:9/inv", event_types=["invoice.paid"])
    other_tenant, _ = p.endpoint("http://127.0.0.1:9/acme", tenant_id="acme")
    disabled, _ = p.endpoint("http://127.0.0.1:9/off")
    p.registry.disable(disabled)

    paid = p.publish("invoice.paid", {"n": 1})
    created = p.publish("user.created", {"n": 2})
    acme = p.publish("invoice.paid", {"n": 3}, tenant_id="acme")
    lonely = p.publish("invoice.paid", {"n": 4}, tenant_id="nobody")
    with psycopg.connect(p.settings.require_database_url()) as conn:
        publish_many(conn, [Event("invoice.paid", {"rolled": "back"})])
        conn.rollback()

    r = relay_once(p)
    assert r.stats.events == 4

    pairs = {
        (str(row["event_id"]), str(row["endpoint_id"]))
        for row in p.rows("select event_id, endpoint_id from webhooks.deliveries")
    }
    assert pairs == {
        (paid, all_types),
        (paid, invoices),
        (created, all_types),
        (acme, other_tenant),
    }
    assert p.value("select count(*) from webhooks.outbox where relayed_at is null") == 0
    assert p.value("select count(*) from webhooks.outbox where id = %s", lonely) == 1

    messages = queued(p)
    deliveries = p.rows("select id, message_id::text from webhooks.deliveries")
    assert sorted(messages) == sorted((d["id"], d["message_id"]) for d in deliveries)


def test_relaying_again_creates_nothing_new(on_broker: Callable[..., Pipeline]) -> None:
    p = on_broker()
    p.endpoint("http://127.0.0.1:9/all")
    p.publish("a.b", {})
    relay_once(p)
    relay_once(p)
    assert p.value("select count(*) from webhooks.deliveries") == 1
    assert len(queued(p)) == 1


def test_lost_messages_are_enqueued_again_after_the_lease(
    on_broker: Callable[..., Pipeline],
) -> None:
    # Redis flushed, or the RabbitMQ queue purged: Postgres rebuilds the queue (guarantee 6).
    p = on_broker()
    p.endpoint("http://127.0.0.1:9/all")
    with psycopg.connect(p.settings.require_database_url()) as conn:
        publish_many(conn, [Event("a.b", {"i": i}) for i in range(50)])
        conn.commit()
    relay_once(p, lease=0.5)
    assert len(queued(p)) == 50
    lose_messages(p.settings)
    assert queued(p) == []

    r = p.start_relay(lease=0.5)
    p.wait_until(lambda: len(queued(p)) == 50, 10, "every lost message to be re-enqueued")
    assert r.stats.reenqueued == 50
    ids = {d for d, _ in queued(p)}
    assert len(ids) == 50


def test_a_lost_message_is_a_warning_only_where_the_broker_can_tell_it_is_lost(
    on_broker: Callable[..., Pipeline], broker_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # RabbitMQ cannot be asked whether a message is queued: every lease that runs out is
    # enqueued again, routinely for a long backlog, and once warned of a loss each time.
    p = on_broker()
    p.endpoint("http://127.0.0.1:9/all")
    with psycopg.connect(p.settings.require_database_url()) as conn:
        publish_many(conn, [Event("a.b", {"i": i}) for i in range(5)])
        conn.commit()
    relay_once(p, lease=0.5)
    lose_messages(p.settings)
    caplog.set_level(logging.INFO, logger="webhooks")
    r = p.start_relay(lease=0.5)
    p.wait_until(lambda: r.stats.reenqueued == 5, 10, "the lost messages re-enqueued")
    said = [(rec.levelno, rec.getMessage()) for rec in caplog.records if "re-enqueued" in rec.msg]
    if broker_url.startswith("amqp"):
        assert said and all(level == logging.INFO for level, _ in said)
        assert all("lease ran out" in text for _, text in said)
    else:
        assert said and all(level == logging.WARNING for level, _ in said)
        assert all("message was lost" in text for _, text in said)


def test_a_first_start_on_an_empty_redis_does_not_say_redis_lost_data(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    # Events wait in the outbox when the first relay ever starts (as in `webhooks dev`).
    p = pipeline
    caplog.set_level(logging.INFO, logger="webhooks")
    p.endpoint("http://127.0.0.1:9/all")
    for i in range(3):
        p.publish("a.b", {"i": i})
    r = p.start_relay(lease=0.3)
    p.wait_until(lambda: len(queued(p)) == 3, 10, "the events to be relayed")
    time.sleep(1.0)  # several scheduler passes, past the messages' lease
    assert "lost its data" not in caplog.text
    assert r.stats.reenqueued == 0


def test_redis_flushed_between_two_relay_starts_is_said_once(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    p = pipeline
    caplog.set_level(logging.WARNING, logger="webhooks")
    p.endpoint("http://127.0.0.1:9/all")
    p.publish("a.b", {})
    relay_once(p)
    assert "lost its data" not in caplog.text
    redis.Redis.from_url(p.settings.redis_url).flushdb()
    relay_once(p)
    relay_once(p)
    assert caplog.text.count("Redis lost its data") == 1
    assert len(queued(p)) == 1


def test_messages_still_queued_are_not_duplicated(pipeline: Pipeline) -> None:
    p = pipeline
    p.endpoint("http://127.0.0.1:9/all")
    p.publish("a.b", {})
    relay_once(p, lease=0.2)
    r = p.start_relay(lease=0.2)
    p.wait_until(
        lambda: (
            p.value(
                "select count(*) from webhooks.deliveries"
                " where next_attempt_at > now() + interval '0.1 s'"
            )
            == 1
        ),
        5,
        "the lease to be extended",
    )
    assert len(queued(p)) == 1
    assert r.stats.reenqueued == 0
    assert r.stats.batches == 0  # the first relay fanned the event out: nothing left to relay


def test_two_relays_make_exactly_the_deliveries_one_would(pipeline: Pipeline) -> None:
    p = pipeline
    p.endpoint("http://127.0.0.1:9/a")
    with psycopg.connect(p.settings.require_database_url()) as conn:
        for start in range(0, 50_000, 10_000):
            publish_many(conn, [Event("a.b", {"i": i}) for i in range(start, start + 10_000)])
        conn.commit()
    first = p.start_relay(batch_size=500)
    second = p.start_relay(batch_size=500)
    p.wait_until(
        lambda: p.value("select count(*) from webhooks.outbox where relayed_at is null") == 0,
        120,
        "the outbox to drain",
    )
    for relay, thread in p.relays:
        relay.stop()
        thread.join(timeout=10)
    assert first.stats.events > 0 and second.stats.events > 0
    assert first.stats.events + second.stats.events == 50_000
    assert p.value("select count(*) from webhooks.deliveries") == 50_000
    assert p.value("select count(distinct event_id) from webhooks.deliveries") == 50_000
    assert len(queued(p)) == 50_000


def test_a_flush_is_noticed_at_once_even_for_long_queued_deliveries(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    p = pipeline
    caplog.set_level(logging.WARNING, logger="webhooks")
    p.endpoint("http://127.0.0.1:9/all")
    for i in range(5):
        p.publish("a.b", {"i": i})
    relay = Relay(
        RelayConfig(
            p.settings.require_database_url(),
            p.settings.redis_url,
            lease=0.3,
            recheck=300,
            poll_interval=0.1,
        )
    )
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    try:
        # The messages wait in a queue no worker reads: once their lease passes, the relay
        # finds them in Redis and leaves them alone for `recheck` (five minutes).
        p.wait_until(
            lambda: (
                p.value(
                    "select count(*) from webhooks.deliveries"
                    " where next_attempt_at > now() + interval '100 seconds'"
                )
                == 5
            ),
            10,
            "the long recheck",
        )
        assert "lost its data" not in caplog.text
        redis.Redis.from_url(p.settings.redis_url).flushdb()
        p.wait_until(lambda: len(queued(p)) == 5, 10, "the flush to be noticed")
        assert relay.stats.reenqueued == 5
        assert "Redis lost its data" in caplog.text
    finally:
        relay.stop()
        thread.join(10)


def test_the_scheduler_runs_once_per_poll_interval_however_busy_the_outbox(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    p.endpoint("http://127.0.0.1:9/all")
    retried = p.publish("a.b", {"retry": True})
    relay_once(p)
    redis.Redis.from_url(p.settings.redis_url).delete(
        queue.queue_key(p.settings.queue_name), queue.messages_key(p.settings.queue_name)
    )
    # Its attempt failed and the retry falls due in a moment.
    p.conn.execute(
        "update webhooks.deliveries set message_id = null,"
        " next_attempt_at = now() + interval '0.3 seconds'"
    )
    relay = Relay(
        RelayConfig(
            p.settings.require_database_url(), p.settings.redis_url, lease=0.2, poll_interval=0.5
        )
    )
    passes: list[float] = []
    schedule_once = relay.schedule_once

    def counted() -> int:
        passes.append(time.monotonic())
        return schedule_once()

    relay.schedule_once = counted  # type: ignore[method-assign]
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    try:
        # 150 notifications over about 1.5 s: fan-out answers each one, the scheduler does
        # not, yet it still runs while they keep coming and enqueues the retry that falls due.
        for i in range(150):
            p.publish("a.b", {"i": i})
            time.sleep(0.01)
        p.wait_until(lambda: relay.stats.events == 150, 10, "every event to be relayed")
        p.wait_until(lambda: relay.stats.scheduled == 1, 10, "the due retry")
    finally:
        relay.stop()
        thread.join(10)
    assert retried in {
        p.value("select event_id::text from webhooks.deliveries where id = %s", d)
        for d, _ in queued(p)
    }
    span = passes[-1] - passes[0]
    assert 2 <= len(passes) <= span / 0.5 + 2, (len(passes), span)


def test_a_stop_during_an_outage_does_not_claim_it_ended(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    # Redis never answers (nothing listens on port 1): the relay logs the outage once, and a
    # stop in the middle of it must not log "available again".
    relay = Relay(
        RelayConfig(
            database_url=pipeline.settings.require_database_url(),
            redis_url="redis://127.0.0.1:1/0",
            poll_interval=0.05,
        )
    )
    caplog.set_level(logging.WARNING, logger="webhooks")
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while "unavailable" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "unavailable, retrying with backoff" in caplog.text
    relay.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert "available again" not in caplog.text


def test_deliveries_enqueued_again_are_logged_once_per_sweep_with_their_count(
    on_broker: Callable[..., Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    # On RabbitMQ a backlog older than the lease comes back batch after batch: one line per
    # sweep, counted, not one per batch (or per message).
    p = on_broker()
    p.endpoint("http://127.0.0.1:9/all")
    with psycopg.connect(p.settings.require_database_url()) as conn:
        publish_many(conn, [Event("a.b", {"i": i}) for i in range(5)])
        conn.commit()
    relay_once(p, lease=0.5)
    lose_messages(p.settings)
    time.sleep(0.6)
    r = Relay(
        RelayConfig(
            p.settings.require_database_url(),
            p.settings.redis_url,
            lease=0.5,
            batch_size=2,
            broker_url=p.settings.broker_url,
            rabbitmq_queue_type=p.settings.rabbitmq_queue_type,
        )
    )
    caplog.set_level(logging.INFO, logger="webhooks")
    try:
        assert r.schedule_sweep() == 5
    finally:
        r.close()
    said = [rec for rec in caplog.records if "re-enqueued" in rec.msg]
    assert len(said) == 1 and said[0].deliveries == 5  # type: ignore[attr-defined]
    assert r.stats.reenqueued == 5
