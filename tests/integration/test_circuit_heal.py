"""A circuit's probe and its closing, against what other processes do at the same moment.

Each race is pinned down with a transaction held open (a circuit closing, a claim under
way) while the other statement runs, so a test fails the same way on every run: a delivery
parked or created behind a circuit that is closing must be due when it closes (healed: the
backlog goes at once), and an endpoint gets one probe at a time, across every process.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.pipeline import Pipeline, fan_out
from tests.receiver import Receiver, hold_until, ok
from worker.store import engine as engine_store
from worker.store import relay as relay_store
from worker.store.db import options


@pytest.fixture
def p(make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline()


def open_circuit(p: Pipeline, endpoint_id: str, *, cooldown_over: bool = False) -> None:
    """Open the endpoint's circuit as five failures would (its probe due if cooldown_over)."""
    p.conn.execute(
        "update webhooks.endpoints set consecutive_failures = 5, failing_since = now(),"
        " circuit_cooldown = 30,"
        " circuit_open_until = now() + case when %s then -1 else 60 end * interval '1 second'"
        " where id = %s",
        (cooldown_over, endpoint_id),
    )


def delivery(p: Pipeline, delivery_id: int) -> dict[str, Any]:
    rows = p.rows(
        "select circuit_wait, message_id::text as message_id,"
        " extract(epoch from next_attempt_at - now()) as due_in"
        " from webhooks.deliveries where id = %s",
        delivery_id,
    )
    return rows[0]


async def closing(p: Pipeline, endpoint_id: str, meanwhile: Callable[[], Any]) -> Any:
    """Close the circuit as a worker's successful probe does (health written, parked
    deliveries made due) and run ``meanwhile`` in a thread before it commits; return what
    it returned."""
    conn = await psycopg.AsyncConnection.connect(p.settings.database_url, **options("test"))
    try:
        async with conn.transaction():
            await engine_store.lock_health(conn, [endpoint_id])
            closed = {
                "id": endpoint_id,
                "consecutive_failures": 0,
                "failing_since": None,
                "circuit_open_until": None,
                "circuit_cooldown": None,
                "circuit_probe_id": None,
                "circuit_probe_until": None,
            }
            await engine_store.write_health(conn, [closed])
            await engine_store.unpark(conn, [endpoint_id])
            other = asyncio.ensure_future(asyncio.to_thread(meanwhile))
            # The other statement runs now, while the close is not committed (or waits for it).
            await asyncio.sleep(0.5)
        return await other
    finally:
        await conn.close()


def test_a_delivery_parked_while_its_circuit_closes_is_due_at_once(
    p: Pipeline, receiver: Receiver
) -> None:
    # A worker claimed the delivery while the circuit was open and parks it just as another
    # process's probe succeeds. The park decided on what it read before the close committed
    # and stayed parked after the close had unparked the others: until the relay's sweep,
    # thirty seconds later.
    endpoint_id, _ = p.endpoint(receiver.on("/ep", ok))
    p.publish("order.paid", {})
    [(delivery_id, _)] = fan_out(p)
    open_circuit(p, endpoint_id)
    p.conn.execute(
        "update webhooks.deliveries set locked_until = now() + interval '35 seconds' where id = %s",
        (delivery_id,),
    )
    row = {"id": delivery_id, "next": None, "status": "pending", "dead_reason": None, "wait": True}

    def park() -> set[int]:
        async def release() -> set[int]:
            conn = await psycopg.AsyncConnection.connect(p.settings.database_url, **options("test"))
            try:
                return await engine_store.release(conn, [row], [delivery_id])
            finally:
                await conn.close()

        return asyncio.run(release())

    assert asyncio.run(closing(p, endpoint_id, park)) == {delivery_id}
    after = delivery(p, delivery_id)
    assert after["circuit_wait"] is False
    assert after["due_in"] <= 0  # due now: the scheduler's next pass enqueues it


def test_an_event_fanned_out_while_its_endpoints_circuit_closes_is_not_parked(
    p: Pipeline, receiver: Receiver
) -> None:
    # The relay creates deliveries behind an open circuit parked, with no message. One it
    # created as the circuit closed was parked after the close had unparked the others.
    endpoint_id, _ = p.endpoint(receiver.on("/ep", ok))
    open_circuit(p, endpoint_id)
    p.publish("order.paid", {})

    def fan() -> list[relay_store.FannedOut]:
        with psycopg.connect(p.settings.database_url, **options("test")) as conn:
            return relay_store.fan_out(conn, 1000, 30.0, 86400.0)

    rows = asyncio.run(closing(p, endpoint_id, fan))
    [created] = [r for r in rows if r.id is not None]
    assert created.message_id is not None  # queued at once, as for any closed circuit
    assert delivery(p, created.id)["circuit_wait"] is False


@pytest.fixture
def claim_under_way(p: Pipeline) -> Iterator[Callable[[int], None]]:
    """Start a worker's claim of a delivery and leave it uncommitted until the test ends."""
    conn = psycopg.connect(p.settings.database_url, **options("test"))
    conn.autocommit = False

    def claim(delivery_id: int) -> None:
        conn.execute(
            "update webhooks.deliveries set locked_until = now() + interval '35 seconds'"
            " where id = %s",
            (delivery_id,),
        )

    try:
        yield claim
    finally:
        conn.commit()
        conn.close()


def test_the_probe_goes_to_a_delivery_no_worker_is_claiming(
    p: Pipeline, receiver: Receiver, claim_under_way: Callable[[int], None]
) -> None:
    # The scheduler picked the most overdue delivery as it read it; a worker's claim of
    # that same delivery committed just after. The probe took it anyway: the worker, which
    # had claimed it as an ordinary delivery, parked it and cleared its message, and the
    # circuit went unprobed for a whole lease (30 s) while the endpoint might be back.
    endpoint_id, _ = p.endpoint(receiver.on("/ep", ok))
    p.publish("order.paid", {"n": 1})
    p.publish("order.paid", {"n": 2})
    first, second = sorted(d for d, _ in fan_out(p))
    p.conn.execute(
        "update webhooks.deliveries set next_attempt_at = now() - interval '1 minute'"
        " where id = %s",
        (first,),
    )
    open_circuit(p, endpoint_id, cooldown_over=True)
    claim_under_way(first)

    probes: list[relay_store.Probe] = []

    def probe() -> None:
        with psycopg.connect(p.settings.database_url, **options("test")) as conn:
            probes.extend(relay_store.probe(conn, 10, 30.0))

    relay = threading.Thread(target=probe)
    relay.start()
    relay.join(5)
    assert not relay.is_alive(), "the probe waits for the claim"
    assert [r.id for r in probes] == [second]
    assert (
        p.value("select circuit_probe_id from webhooks.endpoints where id = %s", endpoint_id)
        == second
    )


def test_one_probe_at_a_time_even_when_a_probe_outlasts_the_lease(
    make_pipeline: Callable[..., Pipeline], receiver: Receiver, gate: threading.Event
) -> None:
    # The receiver accepts and never answers: every attempt ends at the request deadline
    # (2 s), later than a probe's turn (the relay's lease, 1 s). The relay then gave the
    # turn to another delivery while the first probe was still in flight, and the failure of
    # the first, no longer the probe, neither restarted nor doubled the cooldown: a probe
    # every lease, two at a time, instead of one per cooldown across all processes.
    p = make_pipeline(
        request_timeout=2.0,
        retry_schedule=(0.0,) + (0.1,) * 30,
        circuit_failures=2,
        circuit_cooldown=0.5,
        circuit_max_cooldown=4.0,
    )
    endpoint_id, _ = p.endpoint(receiver.on("/hang", hold_until(gate)))
    p.start_relay(lease=1.0)
    p.start_worker(concurrency=16)
    p.start_worker(concurrency=16)  # two engines: one circuit, one probe for both
    for n in range(6):
        p.publish("order.paid", {"n": n})
    p.wait_until(
        lambda: (
            p.value("select circuit_cooldown from webhooks.endpoints where id = %s", endpoint_id)
            == 4.0
        ),
        40,
        "three failed probes in a row, each doubling the cooldown",
    )
    first_wave = min(r.at for r in receiver.to("/hang"))
    probes = sorted(r.at for r in receiver.to("/hang") if r.at > first_wave + 1.0)
    # Each probe starts after the previous one ended (its deadline): never two at once.
    assert len(probes) >= 3
    assert all(b - a >= 2.0 for a, b in itertools.pairwise(probes)), probes
