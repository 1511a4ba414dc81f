"""Summarise the pipeline's state for `webhooks status`, and check its invariants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from worker.queue import BrokerError, Queue, as_queue
from worker.store import queries
from worker.store.db import wrapped_errors


def status(
    conn: psycopg.Connection[Any],
    broker: Queue | Any | None,
    queue_name: str,
    *,
    tenant_id: str | None = None,
) -> dict[str, Any]:
    """Return backlog, lag, delivery states, dead letters, endpoints and queue depth.

    With ``tenant_id`` every count is that tenant's, except the queue depth: the queue is
    shared by every tenant.
    """
    with wrapped_errors():
        row = conn.execute(queries.PIPELINE_STATUS, {"tenant": tenant_id}).fetchone()
    out: dict[str, Any] = {"tenant": tenant_id, **(row or {})}
    age = out.get("outbox_oldest_age_seconds")
    out["outbox_oldest_age_seconds"] = float(age) if age is not None else None
    out["queue_depth"] = queue_depth(broker, queue_name)
    return out


def queue_depth(broker: Queue | Any | None, queue_name: str) -> int | None:
    """Return how many messages wait in the queue; None when there is no broker or it is down.

    A server asks this after giving back its Postgres connection: a broker that is slow to
    answer (up to its socket timeouts) must not keep one of the pool's connections.
    """
    if broker is None:
        return None
    try:
        return as_queue(broker, queue_name).depth()
    except BrokerError:
        return None  # shown as unknown: the broker is down, Postgres is not


@dataclass(frozen=True)
class Invariant:
    """One property that must always hold, and the query listing what breaks it."""

    name: str
    description: str
    sql: str


INVARIANTS = (
    Invariant(
        "one_delivery_per_matching_endpoint",
        "a relayed event lacks a delivery to an endpoint that matched it when relayed",
        queries.CHECK_ONE_DELIVERY_PER_MATCHING_ENDPOINT,
    ),
    Invariant(
        "attempt_count_matches_rows",
        "a delivery's attempt count differs from its attempt rows",
        queries.CHECK_ATTEMPT_COUNT_MATCHES_ROWS,
    ),
    Invariant(
        "terminal_state_is_unique",
        "a delivery is succeeded with a current dead letter, or dead without one",
        queries.CHECK_TERMINAL_STATE_IS_UNIQUE,
    ),
    Invariant(
        "nothing_overdue",
        "a pending delivery is overdue beyond the grace: is a worker running?",
        queries.CHECK_NOTHING_OVERDUE,
    ),
    Invariant(
        "outbox_relayed",
        "an event waits unrelayed beyond the grace: is a relay running?",
        queries.CHECK_OUTBOX_RELAYED,
    ),
    Invariant(
        "tenants_isolated",
        "a delivery joins an event and an endpoint of different tenants",
        queries.CHECK_TENANTS_ISOLATED,
    ),
)


def check(
    conn: psycopg.Connection[Any], *, grace: float = 120.0
) -> dict[str, list[dict[str, Any]]]:
    """Return, per invariant, the rows that break it (empty lists when all hold)."""
    found: dict[str, list[dict[str, Any]]] = {}
    with wrapped_errors():
        for inv in INVARIANTS:
            found[inv.name] = conn.execute(inv.sql, {"grace": grace}).fetchall()
    return found
