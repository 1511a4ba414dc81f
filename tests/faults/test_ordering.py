"""Ordered delivery holds while processes die and the broker loses its messages.

Two worker processes at the engine's full concurrency deliver 100 ordering keys to an ordered
endpoint that fails at random, while events are still being published. Meanwhile a worker is
SIGKILLed (twice, with ordered deliveries in flight and successors just woken), the relay is
SIGKILLed, and the broker loses every queued message. At the end every event was delivered,
and no event of a key reached the receiver before the one before it had been answered 2xx
(`tests.ordering.OrderLog`); a head may be sent twice (at least once), never overtaken.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import BrokerControl, Cluster
from tests.faults.receivers import Sink
from tests.ordering import OrderLog, by_key, keyed_events

KEYS, PER_KEY = 100, 10


@pytest.mark.time_limit(300)
def test_order_holds_and_nothing_is_lost_through_kills_and_a_broker_flush(
    any_cluster: Cluster, broker: BrokerControl, sink: Sink
) -> None:
    c = any_cluster
    c.settings_env["WEBHOOKS_RETRY_SCHEDULE"] = ",".join(["0s"] + ["200ms"] * 40)
    c.settings_env["WEBHOOKS_REQUEST_TIMEOUT"] = "3s"
    c.settings_env["WEBHOOKS_CIRCUIT_FAILURES"] = "0"
    log = OrderLog(fail=0.1, delay=0.02, seed=30)
    _, secret = c.endpoint(sink.url("/ordered"), ordered=True)
    sink.route("/ordered", secret, log.policy)
    events = keyed_events(KEYS, PER_KEY)

    relay = c.start_relay(lease="2s", batch_size=200)
    workers = [c.start_worker(threads=4, concurrency=256) for _ in range(2)]
    ids: list[str] = []
    chunk = len(events) // 10
    faults = {
        2: "kill a worker",
        4: "kill the relay",
        6: "lose the broker's messages",
        8: "kill the other worker",
    }
    for step in range(10):
        ids += c.publish(events[step * chunk : (step + 1) * chunk])
        time.sleep(1.0)
        fault = faults.get(step)
        if fault == "kill a worker" or fault == "kill the other worker":
            victim = workers.pop(0)
            victim.kill()
            workers.append(c.start_worker(threads=4, concurrency=256))
        elif fault == "kill the relay":
            relay.kill()
            relay = c.start_relay(lease="2s", batch_size=200)
        elif fault == "lose the broker's messages":
            broker.lose_everything()
    drained = c.settle(180)
    print(f"\nordered delivery through faults: drained {drained:.1f}s after the last publish")

    assert len(ids) == len(events)
    assert log.violations(by_key(events, ids)) == []
    statuses = c.rows("select status, count(*) as n from webhooks.deliveries group by 1")
    assert statuses == [{"status": "succeeded", "n": len(ids)}]
    assert {event_id for _, event_id in sink.ok()} == set(ids)
    assert sink.unverified() == []
    c.assert_attempts_consistent()
    c.check()
