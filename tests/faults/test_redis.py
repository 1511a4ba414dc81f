"""The broker loses everything, restarts or drops its connections: nothing is lost.

Guarantee 6: Redis holds nothing that cannot be rebuilt from Postgres. Messages queued when
Redis forgets them are enqueued again by the relay's scheduler once their lease passes, and
retries waiting for their time live in Postgres, not in Dramatiq's in-memory delays.
"""

from __future__ import annotations

import time

import pytest

from producers import Event
from tests.faults.harness import BrokerControl, Cluster, RedisServer
from tests.faults.receivers import Sink, always
from worker.queue import redis as queue


@pytest.mark.quorum
@pytest.mark.parametrize("loss", ["flush", "restart", "drop"])
def test_losing_the_broker_delays_deliveries_and_loses_none(
    any_cluster: Cluster, broker: BrokerControl, sink: Sink, loss: str
) -> None:
    # flush: Redis flushed / the RabbitMQ queue purged; restart: Redis killed and started
    # empty / RabbitMQ's application stopped and started; drop: every client connection
    # closed by the server.
    c = any_cluster
    c.settings_env["WEBHOOKS_RETRY_SCHEDULE"] = "0s,10s,10s"
    # Retries waiting for their time, two ways: four first attempts fail (500; fewer than
    # the five consecutive failures that open the endpoint's circuit), and fifty are
    # throttled (429, Retry-After: 10).
    _, secret_f = c.endpoint(sink.url("/failed"), event_types=["fail.once"])
    _, secret_t = c.endpoint(sink.url("/throttled"), event_types=["throttle.once"])
    _, secret_q = c.endpoint(sink.url("/queued"), event_types=["queue.me"])
    sink.route("/failed", secret_f, lambda _id, n: 500 if n == 0 else 200)
    sink.route(
        "/throttled", secret_t, lambda _id, n: (429, {"retry-after": "10"}) if n == 0 else 200
    )
    sink.route("/queued", secret_q, always(200))
    relay = c.start_relay(lease="2s")
    worker = c.start_worker(threads=4)

    failed_ids = c.publish(Event("fail.once", {"i": i}) for i in range(4))
    throttled_ids = c.publish(Event("throttle.once", {"i": i}) for i in range(50))
    c.wait_until(
        lambda: (
            c.value(
                "select count(*) from webhooks.deliveries where attempts = 1 and status = 'pending'"
                " and message_id is null and next_attempt_at > now() + interval '3 seconds'"
            )
            == 54
        ),
        30,
        "every retry to be waiting",
    )
    # Queued: with no worker running, the relay's messages wait in the broker.
    worker.stop()
    queued_ids = c.publish(Event("queue.me", {"i": i}) for i in range(300))
    c.wait_until(lambda: broker.depth() == 300, 30, "300 queued messages")

    if loss == "flush":
        broker.lose_everything()
        c.start_worker(threads=4)
    elif loss == "drop":
        c.start_worker(threads=4)
        time.sleep(1)
        broker.drop_connections()
    else:
        broker.stop()
        # Both daemons run through the outage; the new worker even starts during it.
        c.start_worker(threads=4)
        time.sleep(3)
        broker.start()

    c.settle(90)
    assert relay.alive(), "the relay exited on a transient error"
    expected = (
        {("/failed", i) for i in failed_ids}
        | {("/throttled", i) for i in throttled_ids}
        | {("/queued", i) for i in queued_ids}
    )
    ok = sink.ok()
    assert set(ok) == expected
    assert all(n == 1 for n in ok.values()), "a delivery succeeded twice"
    assert c.value("select count(*) from webhooks.deliveries where status = 'succeeded'") == 354
    attempts = {
        r["type"]: r["n"]
        for r in c.rows(
            "select e.event_types[1] as type, sum(d.attempts) as n from webhooks.deliveries d"
            " join webhooks.endpoints e on e.id = d.endpoint_id group by 1"
        )
    }
    assert attempts == {"fail.once": 8, "throttle.once": 100, "queue.me": 300}
    c.assert_attempts_consistent()
    assert sink.unverified() == []
    c.check()


def test_stale_messages_from_an_old_redis_snapshot_never_trigger_an_attempt(
    cluster: Cluster, redis_server: RedisServer, sink: Sink
) -> None:
    """Redis restarts from an old snapshot: every message in it has been used already.

    Each delivery names the one message entitled to attempt it; a used or stale message
    claims nothing. So a delivery that succeeded is not sent again (guarantee 5) and one
    waiting for its retry is not attempted early.
    """
    c = cluster
    c.settings_env["WEBHOOKS_RETRY_SCHEDULE"] = "0s,15s,15s"
    _, secret_f = c.endpoint(sink.url("/failed"), event_types=["fail.once"])
    _, secret_o = c.endpoint(sink.url("/ok"), event_types=["ok"])
    sink.route("/failed", secret_f, lambda _id, n: 500 if n == 0 else 200)
    sink.route("/ok", secret_o, always(200))
    relay = c.start_relay(lease="2s")
    failed_ids = c.publish(Event("fail.once", {"i": i}) for i in range(4))
    ok_ids = c.publish(Event("ok", {"i": i}) for i in range(40))
    with redis_server.client() as client:
        c.wait_until(lambda: client.llen(queue.queue_key("webhooks")) == 44, 30, "44 messages")
        client.save()  # the snapshot: every message still queued

    worker = c.start_worker(threads=4)
    c.wait_until(
        lambda: (
            c.value(
                "select count(*) from webhooks.deliveries where attempts = 1 and message_id is null"
            )
            == 44
        ),
        30,
        "every first attempt",
    )
    first_attempt_done = time.monotonic()
    worker.stop()
    redis_server.kill()
    redis_server.start()  # loads the old snapshot: 44 stale messages are back
    with redis_server.client() as client:
        assert client.hlen(queue.messages_key("webhooks")) == 44
        c.start_worker(threads=4)
        c.wait_until(
            lambda: client.hlen(queue.messages_key("webhooks")) == 0,
            30,
            "the stale messages to be consumed",
        )
    consumed = time.monotonic() - first_attempt_done

    c.settle(60)
    assert relay.alive()
    ok = sink.ok()
    assert set(ok) == {("/failed", i) for i in failed_ids} | {("/ok", i) for i in ok_ids}
    assert all(n == 1 for n in ok.values()), "a succeeded delivery was sent again"
    assert len(sink.to("/ok")) == 40
    # The retries kept their time, 15 s (±20%) after the first attempt, although the stale
    # messages came back (and were consumed) well before.
    assert consumed < 11
    for event_id in failed_ids:
        hits = sorted(h.at for h in sink.to("/failed") if h.webhook_id == event_id)
        assert len(hits) == 2 and hits[1] - hits[0] >= 12 - 0.2, hits
    c.assert_attempts_consistent()
    assert c.value("select sum(attempts) from webhooks.deliveries") == 48
    c.check()
