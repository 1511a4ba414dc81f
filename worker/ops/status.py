"""Summarise the pipeline's state for `webhooks status`, and check its invariants."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg

from worker.queue import BrokerError, Queue, as_queue
from worker.store import status as rows
from worker.store.db import wrapped_errors
from worker.store.status import INVARIANTS, Invariant, Status

__all__ = ["INVARIANTS", "Invariant", "Status", "check", "queue_depth", "status"]


def status(
    conn: psycopg.Connection[Any],
    broker: Queue | Any | None,
    queue_name: str,
    *,
    tenant_id: str | None = None,
) -> Status:
    """Return backlog, lag, delivery states, dead letters, endpoints and queue depth.

    With ``tenant_id`` every count is that tenant's, except the queue depth: the queue is
    shared by every tenant.
    """
    with wrapped_errors():
        row = rows.status(conn, tenant_id)
        blocked = rows.blocked_keys(conn, tenant_id) if row.blocked_keys else []
    age = row.outbox_oldest_age_seconds
    return replace(
        row,
        tenant=tenant_id,
        outbox_oldest_age_seconds=float(age) if age is not None else None,
        queue_depth=queue_depth(broker, queue_name),
        blocked=tuple(blocked),
    )


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


def check(conn: psycopg.Connection[Any], *, grace: float = 120.0) -> dict[str, list[Any]]:
    """Return, per invariant, the rows that break it (empty lists when all hold)."""
    found: dict[str, list[Any]] = {}
    with wrapped_errors():
        for inv in INVARIANTS:
            found[inv.name] = rows.violations(conn, inv, grace)
    return found
