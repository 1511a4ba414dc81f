"""Workers deliver signed webhooks, retry on the schedule, record attempts, dead-letter."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
import standardwebhooks
import svix.webhooks

from tests.pipeline import Pipeline
from tests.receiver import Receiver, fail_first, status
from worker.queue import redis as queue


def verify(secret: str, request: Any) -> dict[str, Any]:
    """Verify with both reference libraries; return the parsed body."""
    headers = {k: v for k, v in request.headers.items() if k.startswith("webhook-")}
    body = request.body.decode()
    standardwebhooks.Webhook(secret).verify(body, headers)
    svix.webhooks.Webhook(secret).verify(body, headers)
    parsed: dict[str, Any] = json.loads(body)
    return parsed


@pytest.fixture
def running(on_broker: Callable[..., Pipeline]) -> Pipeline:
    """Return a running relay and worker, on each broker in turn."""
    pipeline = on_broker()
    pipeline.start_relay()
    pipeline.start_worker()
    return pipeline


def test_every_event_reaches_every_matching_endpoint_signed(
    running: Pipeline, receiver: Receiver
) -> None:
    p = running
    _, secret_a = p.endpoint(receiver.url("/a"), headers={"Authorization": "Bearer t"})
    _, secret_b = p.endpoint(receiver.url("/b"), event_types=["order.paid"])
    ids = [p.publish("order.paid", {"order": i}) for i in range(5)]
    ids += [p.publish("order.created", {"order": i}) for i in range(5)]

    got_a = receiver.wait_for("/a", 10)
    got_b = receiver.wait_for("/b", 5)
    p.settle()
    assert sorted(r.headers["webhook-id"] for r in got_a) == sorted(ids)
    assert sorted(r.headers["webhook-id"] for r in got_b) == sorted(ids[:5])
    for request in got_a:
        body = verify(secret_a, request)
        assert body["type"] in ("order.paid", "order.created")
        assert set(body) == {"type", "timestamp", "data"}
        assert request.headers["authorization"] == "Bearer t"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("webhooks-outbox/")
    for request in got_b:
        assert verify(secret_b, request)["data"]["order"] in range(5)
    assert p.value("select count(*) from webhooks.attempts") == 15
    assert p.value("select count(*) from webhooks.deliveries where status = 'succeeded'") == 15


def test_a_receiver_failing_k_times_gets_k_plus_one_attempts(
    running: Pipeline, receiver: Receiver
) -> None:
    p = running
    p.endpoint(receiver.on("/flaky", fail_first(2)))
    event = p.publish("a.b", {})
    receiver.wait_for("/flaky", 3)
    p.settle()
    rows = p.rows(
        "select number, status_code, error_kind, trigger from webhooks.attempts order by number"
    )
    assert [(r["number"], r["status_code"]) for r in rows] == [(1, 500), (2, 500), (3, 200)]
    assert rows[0]["error_kind"] == "http_status" and rows[2]["error_kind"] is None
    assert {r.headers["webhook-id"] for r in receiver.to("/flaky")} == {event}
    assert len({r.headers["webhook-timestamp"] for r in receiver.to("/flaky")}) >= 1
    d = p.rows("select status, attempts, spent, last_status_code from webhooks.deliveries")[0]
    assert d == {"status": "succeeded", "attempts": 3, "spent": 3, "last_status_code": 200}


def test_a_receiver_that_always_fails_ends_in_dead_letters(
    running: Pipeline, receiver: Receiver
) -> None:
    p = running
    p.endpoint(receiver.on("/down", status(503 if False else 500)))
    p.publish("a.b", {"x": 1})
    receiver.wait_for("/down", 3)
    p.settle()
    assert len(receiver.to("/down")) == 3  # the schedule allows three attempts
    letter = p.rows("select reason, attempts, last_status_code from webhooks.dead_letters")
    assert letter == [{"reason": "attempts_exhausted", "attempts": 3, "last_status_code": 500}]
    assert p.value("select count(*) from webhooks.attempts") == 3


def test_410_disables_the_endpoint_and_dead_letters_its_deliveries(
    running: Pipeline, receiver: Receiver
) -> None:
    p = running
    ep, _ = p.endpoint(receiver.on("/gone", status(410)))
    p.publish("a.b", {})
    receiver.wait_for("/gone", 1)
    p.settle()
    # The endpoint is disabled right after the attempt is recorded, in its own statement.
    p.wait_until(lambda: not p.registry.get(ep).enabled, 10, "the endpoint to be disabled")
    endpoint = p.registry.get(ep)
    assert not endpoint.enabled and "410" in (endpoint.disabled_reason or "")
    assert p.value("select reason from webhooks.dead_letters") == "endpoint_disabled"
    p.publish("a.b", {})  # a disabled endpoint gets nothing new
    p.wait_until(
        lambda: p.value("select count(*) from webhooks.outbox where relayed_at is null") == 0
    )
    assert p.value("select count(*) from webhooks.deliveries") == 1
    assert len(receiver.to("/gone")) == 1


def test_429_with_retry_after_waits_and_spends_no_attempt(
    running: Pipeline, receiver: Receiver
) -> None:
    p = running
    p.endpoint(
        receiver.on(
            "/busy", lambda n: (429, {"retry-after": "1"}, b"") if n <= 3 else (200, {}, b"")
        )
    )
    p.publish("a.b", {})
    got = receiver.wait_for("/busy", 4, timeout=30)
    p.settle()
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert min(gaps) >= 0.9  # Retry-After honoured
    d = p.rows("select status, attempts, spent from webhooks.deliveries")[0]
    # Three throttled attempts were recorded but only the last one spent the budget: with a
    # schedule of three attempts, spending them would have killed the delivery.
    assert d == {"status": "succeeded", "attempts": 4, "spent": 1}
    kinds = [r["error_kind"] for r in p.rows("select error_kind from webhooks.attempts")]
    assert kinds.count("throttled") == 3


def test_a_redirect_is_a_failure_and_is_not_followed(running: Pipeline, receiver: Receiver) -> None:
    p = running
    p.endpoint(receiver.on("/moved", status(302, {"location": receiver.url("/target")})))
    p.publish("a.b", {})
    receiver.wait_for("/moved", 3)
    p.settle()
    assert receiver.to("/target") == []
    assert {r["error_kind"] for r in p.rows("select error_kind from webhooks.attempts")} == {
        "redirect"
    }
    assert p.value("select status from webhooks.deliveries") == "dead"


def test_private_addresses_are_blocked_unless_allowed(
    make_pipeline: Any, receiver: Receiver
) -> None:
    p = make_pipeline(allowed_networks=())
    p.start_relay()
    p.start_worker()
    p.endpoint(receiver.url("/private"))
    p.publish("a.b", {})
    p.settle()
    assert receiver.to("/private") == []
    rows = p.rows("select error_kind, error from webhooks.attempts")
    assert rows and {r["error_kind"] for r in rows} == {"blocked"}
    assert "127.0.0.1" in rows[0]["error"]
    assert p.value("select reason from webhooks.dead_letters") == "attempts_exhausted"


def test_a_duplicate_message_never_resends_a_succeeded_delivery(
    running: Pipeline, receiver: Receiver
) -> None:
    p = running
    p.endpoint(receiver.url("/once"))
    p.publish("a.b", {})
    receiver.wait_for("/once", 1)
    p.settle()
    d = p.rows("select id from webhooks.deliveries")[0]
    message = p.value("select message_id::text from webhooks.deliveries where id = %s", d["id"])
    assert message is None  # used up by the attempt
    # Replay an old message by hand, as a broker's redelivery would.
    q = p.queue()
    q.enqueue([(d["id"], "00000000-0000-0000-0000-000000000001")])
    p.wait_until(lambda: q.depth() == 0)
    if p.settings.broker_is_redis:  # acknowledged too, not only taken
        client = redis.Redis.from_url(p.settings.redis_url)
        p.wait_until(lambda: not client.hlen(queue.messages_key(p.settings.queue_name)))
    q.close()
    assert len(receiver.to("/once")) == 1
    assert p.value("select attempts from webhooks.deliveries") == 1


def test_tenants_never_receive_each_others_events(running: Pipeline, receiver: Receiver) -> None:
    p = running
    p.endpoint(receiver.url("/acme"), tenant_id="acme")
    p.endpoint(receiver.url("/globex"), tenant_id="globex")
    acme = [p.publish("a.b", {"t": "acme"}, tenant_id="acme") for _ in range(3)]
    globex = [p.publish("a.b", {"t": "globex"}, tenant_id="globex") for _ in range(2)]
    receiver.wait_for("/acme", 3)
    receiver.wait_for("/globex", 2)
    p.settle()
    assert sorted(r.headers["webhook-id"] for r in receiver.to("/acme")) == sorted(acme)
    assert sorted(r.headers["webhook-id"] for r in receiver.to("/globex")) == sorted(globex)


def test_rotated_secrets_sign_with_both_during_grace(running: Pipeline, receiver: Receiver) -> None:
    p = running
    ep, old = p.endpoint(receiver.url("/rot"))
    new = p.registry.rotate_secret(ep, grace=3600)
    p.publish("a.b", {})
    request = receiver.wait_for("/rot", 1)[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    verify(old, request)
    verify(new, request)
