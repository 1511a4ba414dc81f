"""The pipeline's counts (`webhooks status`) and the invariants `webhooks check` verifies.

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from worker.store import queries
from worker.store.rows import many, one


@dataclass(frozen=True, kw_only=True)
class Status:
    """Backlog, lag, deliveries by state, dead letters, endpoints and queue depth."""

    #: The tenant counted, or None for all.
    tenant: str | None = None
    outbox_backlog: int
    outbox_oldest_age_seconds: float | None
    pending: int
    due: int
    queued: int
    in_flight: int
    waiting: int
    #: Ordered deliveries waiting for the one before them in their key.
    behind_their_key: int
    #: Ordering keys held up by a dead delivery (WEBHOOKS_ORDERED_ON_DEATH=block).
    blocked_keys: int
    behind_open_circuits: int
    dead_letters: int
    disabled_endpoints: int
    open_circuits: int
    endpoints: int
    #: Messages in the queue (every tenant's); None when unknown. Set by the caller.
    queue_depth: int | None = None
    #: The first blocked keys (`blocked_keys`). Set by the caller.
    blocked: tuple[BlockedKey, ...] = ()


@dataclass(frozen=True)
class BlockedKey:
    """An ordering key held up by a dead delivery, and how many wait behind it."""

    endpoint_id: str
    ordering_key: str
    delivery_id: int
    died_at: datetime
    waiting: int


def blocked_keys(
    conn: psycopg.Connection[Any],
    tenant_id: str | None,
    endpoint_id: uuid.UUID | None = None,
    limit: int = 20,
) -> list[BlockedKey]:
    """Return the ordering keys a dead delivery holds up (of a tenant, an endpoint)."""
    params = {"tenant": tenant_id, "endpoint": endpoint_id, "limit": limit}
    return many(conn, BlockedKey, queries.BLOCKED_KEYS, params)


def status(conn: psycopg.Connection[Any], tenant_id: str | None) -> Status:
    """Return the pipeline's counts (a tenant's when given); the queue depth is left None."""
    row = one(conn, Status, queries.PIPELINE_STATUS, {"tenant": tenant_id})
    assert row is not None  # counts: always one row
    return row


# -- invariants: each row is what breaks one --------------------------------------------------


@dataclass(frozen=True)
class MissingDelivery:
    """A relayed event without a delivery to an endpoint that matched it."""

    event_id: str
    endpoint_id: str


@dataclass(frozen=True)
class MiscountedAttempts:
    """A delivery whose attempt count differs from its attempt rows."""

    delivery_id: int
    attempts: int
    rows: int


@dataclass(frozen=True)
class TwoStates:
    """A delivery succeeded with a current dead letter, or dead without one."""

    delivery_id: int
    status: str


@dataclass(frozen=True)
class Overdue:
    """A pending delivery overdue beyond the grace."""

    delivery_id: int
    next_attempt_at: datetime
    locked_until: datetime | None


@dataclass(frozen=True)
class Unrelayed:
    """An event waiting unrelayed beyond the grace."""

    event_id: str
    event_type: str
    created_at: datetime


@dataclass(frozen=True)
class CrossTenant:
    """A delivery joining an event and an endpoint of different tenants."""

    delivery_id: int
    tenant_id: str
    event_tenant: str
    endpoint_tenant: str


@dataclass(frozen=True)
class Invariant:
    """One property that must always hold, the query listing what breaks it, and its rows."""

    name: str
    description: str
    sql: str
    row: type[Any]


INVARIANTS = (
    Invariant(
        "one_delivery_per_matching_endpoint",
        "a relayed event lacks a delivery to an endpoint that matched it when relayed",
        queries.CHECK_ONE_DELIVERY_PER_MATCHING_ENDPOINT,
        MissingDelivery,
    ),
    Invariant(
        "attempt_count_matches_rows",
        "a delivery's attempt count differs from its attempt rows",
        queries.CHECK_ATTEMPT_COUNT_MATCHES_ROWS,
        MiscountedAttempts,
    ),
    Invariant(
        "terminal_state_is_unique",
        "a delivery is succeeded with a current dead letter, or dead without one",
        queries.CHECK_TERMINAL_STATE_IS_UNIQUE,
        TwoStates,
    ),
    Invariant(
        "nothing_overdue",
        "a pending delivery is overdue beyond the grace: is a worker running?",
        queries.CHECK_NOTHING_OVERDUE,
        Overdue,
    ),
    Invariant(
        "outbox_relayed",
        "an event waits unrelayed beyond the grace: is a relay running?",
        queries.CHECK_OUTBOX_RELAYED,
        Unrelayed,
    ),
    Invariant(
        "tenants_isolated",
        "a delivery joins an event and an endpoint of different tenants",
        queries.CHECK_TENANTS_ISOLATED,
        CrossTenant,
    ),
)


def violations(conn: psycopg.Connection[Any], invariant: Invariant, grace: float) -> list[Any]:
    """Return the rows (of ``invariant.row``) that break ``invariant``, at most 100."""
    rows: list[Any] = many(conn, invariant.row, invariant.sql, {"grace": grace})
    return rows
