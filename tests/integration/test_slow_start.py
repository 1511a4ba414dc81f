"""A healed or new endpoint gets its backlog at the pace it answers, not all at once.

Each worker process keeps a slow-start window per endpoint (`worker.policy.window`): a few
requests at first and after an outage, one more for every answer. Without it, the backlog an
outage left (every delivery due the moment the closing probe succeeds) went out as a few
hundred simultaneous connections, which a receiver with a small accept queue turns into SYN
retries, timeouts and a circuit that opens again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tests.pipeline import Pipeline
from tests.receiver import Answer, Receiver, hold_until
from worker.engine.engine import WINDOW_WAIT
from worker.policy.window import START


def test_a_healed_endpoint_gets_its_backlog_in_widening_waves_and_all_of_it_promptly(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver
) -> None:
    p = make_pipeline(
        retry_schedule=(0.0,) + (0.3,) * 60,
        circuit_failures=3,
        circuit_cooldown=0.5,
        circuit_max_cooldown=1.0,
    )
    healed = threading.Event()

    def answer(_: int) -> Answer:
        if not healed.is_set():
            return 500, {}, b"down"
        time.sleep(0.3)  # a receiver doing real work: the window is seen in flight
        return 200, {}, b"ok"

    endpoint_id, _ = p.endpoint(receiver.on("/ep", answer))
    p.start_relay(lease=2.0)
    p.start_worker(concurrency=256)
    p.start_worker(concurrency=256)
    for n in range(200):
        p.publish("order.paid", {"n": n})
    p.wait_until(
        lambda: p.value("select count(*) from webhooks.deliveries where circuit_wait") >= 150,
        60,
        "the backlog parked behind the open circuit",
    )
    healed.set()
    heal = time.time()
    p.settle(timeout=60)

    # The first request after healing is the probe (the circuit lets one through at a time);
    # its success closes the circuit and the backlog is due.
    probe, *backlog = sorted(r.at for r in receiver.to("/ep") if r.at >= heal)
    # The first round trip of the backlog (each answer takes 0.3 s): a window per process.
    first_wave = [at for at in backlog if at < backlog[0] + 0.25]
    assert len(first_wave) <= 2 * (START + 2), len(first_wave)
    # And yet all of it went within a few round trips of the close.
    assert backlog[-1] - probe < 5.0, backlog[-1] - probe
    assert (
        p.value(
            "select count(*) from webhooks.deliveries"
            " where endpoint_id = %s and status = 'succeeded'",
            endpoint_id,
        )
        == 200
    )


def test_a_new_endpoint_hanging_leaves_its_waiting_deliveries_to_their_leases(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver, gate: threading.Event
) -> None:
    # Beyond its window, a delivery waits in the process for a request to its endpoint to end,
    # but not longer than its claim's lock allows: a receiver that holds every request gets
    # its window in flight, and the rest are put back (due at once) rather than sent late.
    p = make_pipeline(request_timeout=30.0)
    p.endpoint(receiver.on("/hang", hold_until(gate)))
    for n in range(40):
        p.publish("order.paid", {"n": n})
    p.start_relay(lease=60.0)
    p.start_worker(concurrency=64)
    receiver.wait_for("/hang", START)
    # Longer than a delivery may wait in the process (`WINDOW_WAIT`): those put back come
    # again, wait again, and are never sent while the window is full.
    time.sleep(WINDOW_WAIT + 2.0)
    assert len(receiver.to("/hang")) == START
    assert p.value("select count(*) from webhooks.attempts") == 0
    gate.set()
    p.settle(timeout=60)
    assert p.value("select count(*) from webhooks.deliveries where status = 'succeeded'") == 40
    assert p.value("select count(*) from webhooks.attempts") == 40
