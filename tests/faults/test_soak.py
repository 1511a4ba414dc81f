"""Soak: thousands of events through real daemons while things keep breaking.

Several endpoints (two tenants, event-type filters, a third tenant with none) behind a
receiver that fails at random; meanwhile the test flushes Redis once, SIGKILLs the relay
once and SIGKILLs a worker every few seconds, restarting each. At the end every committed
event was received, signature verified, by every endpoint that matched it, or sits in the
dead letters with its attempts; nobody received another tenant's event; `webhooks check`
passes. Prints the duplicate rate and the time to drain after the last fault.

Size with WEBHOOKS_SOAK_EVENTS (default 1500, about two minutes); the publishing rate with
WEBHOOKS_SOAK_RATE (events per second, default 60). A worker killed while it holds
deliveries leaves them to Postgres: each comes back when its lease or claim lock runs out
(up to the request deadline plus 30 s), so the drain after the last kill takes about that
long. Redis is flushed early, while
the queue is short: a message that has waited longer than the relay's lease is next checked
only after the relay's recheck interval (300 s), so a flush after the worker kills (whose
held messages are such) would add up to five minutes to the drain.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter

import pytest

from producers import Event
from tests.faults.harness import Cluster, Proc, RedisServer
from tests.faults.receivers import Sink

SOAK_EVENTS = int(os.environ.get("WEBHOOKS_SOAK_EVENTS", "1500"))
SOAK_RATE = float(os.environ.get("WEBHOOKS_SOAK_RATE", "60"))
FAIL_RATE = 0.2
KILL_EVERY = 5.0
#: (path, tenant, event types or None for all)
ENDPOINTS = [
    ("/t1-all", "t1", None),
    ("/t1-paid", "t1", ["order.paid"]),
    ("/t2-all", "t2", None),
    ("/t2-some", "t2", ["user.created", "order.paid"]),
]
TYPES = ["order.paid", "order.created", "user.created"]
TENANTS = ["t1", "t2", "t1", "t2", "t3"]  # t3 has no endpoint at all


def matches(event: Event, tenant: str, types: list[str] | None) -> bool:
    return event.tenant_id == tenant and (types is None or event.event_type in types)


@pytest.mark.time_limit(420 + SOAK_EVENTS / 15)
def test_soak_under_random_failures_and_repeated_crashes(
    cluster: Cluster, redis_server: RedisServer, sink: Sink
) -> None:
    c = cluster
    c.settings_env["WEBHOOKS_RETRY_SCHEDULE"] = "0s,1s,2s,4s,8s"
    rng = random.Random(20)
    rng_lock = threading.Lock()

    def flaky(_id: str, _n: int) -> int:
        with rng_lock:
            return 500 if rng.random() < FAIL_RATE else 200

    for path, tenant, types in ENDPOINTS:
        _, secret = c.endpoint(sink.url(path), tenant_id=tenant, event_types=types)
        sink.route(path, secret, flaky)
    events = [
        Event(TYPES[i % 3], {"i": i}, tenant_id=TENANTS[(i // 3) % len(TENANTS)])
        for i in range(SOAK_EVENTS)
    ]

    started = time.monotonic()
    relay = c.start_relay(lease="2s", batch_size=500)
    workers: list[Proc] = [c.start_worker(threads=4) for _ in range(2)]
    phase = max(30.0, SOAK_EVENTS / SOAK_RATE)
    # The faults, in the order they come: Redis loses everything, the relay dies, then the
    # workers die one after the other until publishing ends.
    flush_at, relay_kill_at = 0.15 * phase, 0.3 * phase
    next_kill = 0.4 * phase
    flushed = relay_killed = False
    kills = 0
    ids: list[str] = []
    last_fault = started
    while len(ids) < len(events):
        elapsed = time.monotonic() - started
        due = min(len(events), int(len(events) * elapsed / phase) + 1)
        if due > len(ids):
            ids += c.publish(events[len(ids) : due])
        if not flushed and elapsed >= flush_at:
            redis_server.flush()
            flushed, last_fault = True, time.monotonic()
        if not relay_killed and elapsed >= relay_kill_at:
            relay.kill()
            relay = c.start_relay(lease="2s", batch_size=500)
            relay_killed, last_fault = True, time.monotonic()
        if elapsed >= next_kill and elapsed < phase - 1:
            victim = workers.pop(0)
            victim.kill()
            workers.append(c.start_worker(threads=4))
            kills += 1
            next_kill += KILL_EVERY
            last_fault = time.monotonic()
        time.sleep(0.05)
    published_at = time.monotonic()

    drain = c.settle(300 + SOAK_EVENTS / 50)
    drained_at = time.monotonic()

    # -- what must hold ------------------------------------------------------------------
    expected = {
        (path, event_id)
        for event, event_id in zip(events, ids, strict=True)
        for path, tenant, types in ENDPOINTS
        if matches(event, tenant, types)
    }
    path_of = {
        r["id"]: r["url"].rsplit("/", 1)[1]
        for r in c.rows("select id::text, url from webhooks.endpoints")
    }
    deliveries = c.rows(
        "select d.id, d.status, d.attempts, d.event_id::text, d.endpoint_id::text,"
        " dl.reason, dl.attempts as letter_attempts"
        " from webhooks.deliveries d"
        " left join webhooks.dead_letters dl on dl.delivery_id = d.id and dl.replayed_at is null"
    )
    pairs = Counter(("/" + path_of[d["endpoint_id"]], d["event_id"]) for d in deliveries)
    assert set(pairs) == expected, "a matching endpoint lacks a delivery, or a stray one exists"
    assert max(pairs.values()) == 1, "two deliveries for one (event, endpoint)"
    ok = sink.ok()
    assert set(ok) <= expected, "an endpoint received an event that was not its own"
    dead_letters = set()
    for d in deliveries:
        if d["status"] != "succeeded":
            assert d["status"] == "dead", d
            # In the dead letters with its attempts (their rows are checked below).
            assert d["reason"] == "attempts_exhausted" and d["letter_attempts"] == 5, d
            dead_letters.add(("/" + path_of[d["endpoint_id"]], d["event_id"]))
    lost = expected - set(ok) - dead_letters
    assert not lost, f"{len(lost)} deliveries neither received nor dead-lettered"
    dead = len(dead_letters)
    assert sink.unverified() == [], "a request failed signature verification"
    c.assert_attempts_consistent()
    c.check()

    requests = len(sink.hits)
    attempts = c.value("select count(*) from webhooks.attempts")
    duplicates = sum(ok.values()) - len(ok)
    print(
        f"\nsoak: {len(events)} events, {len(deliveries)} deliveries"
        f" ({len(deliveries) - dead} succeeded, {dead} dead letters), {requests} requests,"
        f" {attempts} attempts recorded ({requests - attempts} answered to a killed worker,"
        f" {sink.cut_short} cut short by a kill)"
        f"\n  faults: Redis flushed once, relay killed once, {kills} worker kills"
        f"\n  lost deliveries: {len(lost)}; duplicate receipts:"
        f" {duplicates} ({duplicates / max(1, len(ok)):.3%} of delivered)"
        f"\n  publishing {published_at - started:.0f}s; drained {drained_at - last_fault:.1f}s"
        f" after the last fault ({drain:.1f}s after publishing ended);"
        f" total {drained_at - started:.0f}s"
    )
