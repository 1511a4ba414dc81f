"""A circuit's probe and its closing, against what other processes do at the same moment.

Each race is pinned down with a transaction held open (a circuit closing, a claim under
way) while the other statement runs, so a test fails the same way on every run: a delivery
parked or created behind a circuit that is closing must be due when it closes (healed: the
backlog goes at once), and an endpoint gets one probe at a time, across every process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.pipeline import Pipeline, fan_out
from tests.receiver import Receiver, ok
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
