"""One slow endpoint must not take the worker's in-flight slots from the healthy ones."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tests.pipeline import Pipeline
from tests.receiver import Receiver, hold_until


def test_a_hanging_endpoint_leaves_slots_for_the_healthy_one(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver, gate: threading.Event
) -> None:
    # The slow receiver holds every request until the test releases it, so without a
    # per-endpoint cap all four in-flight slots would sit on it and the healthy endpoint would get
    # nothing until then. No timing is asserted: only who gets through while it hangs.
    p = make_pipeline(request_timeout=60.0)
    p.endpoint(receiver.on("/slow", hold_until(gate)), event_types=["slow.thing"])
    p.endpoint(receiver.url("/healthy"), event_types=["healthy.thing"])
    for i in range(20):
        p.publish("slow.thing", {"i": i})
    for i in range(100):
        p.publish("healthy.thing", {"i": i})
    p.start_relay()
    p.start_worker(threads=4, concurrency=4)

    receiver.wait_for("/healthy", 100, timeout=60)
    assert len(receiver.to("/slow")) <= 2  # at most half of the four slots
    gate.set()
    p.settle(timeout=120)
    assert p.value("select count(*) from webhooks.deliveries where status = 'succeeded'") == 120
