"""Deliveries' rows: the history listing, one delivery with its attempts, retry and resend.

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from worker.store import queries
from worker.store.rows import many, one, run, scalar


@dataclass(frozen=True)
class Listed:
    """A delivery as lists show it (`GET /v1/deliveries`, `webhooks deliveries list`)."""

    id: int
    tenant_id: str
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    #: None once finished.
    next_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt of a delivery (webhooks.attempts), in the order shown."""

    number: int
    trigger: str
    started_at: datetime
    duration_seconds: float
    status_code: int | None
    error_kind: str | None
    error: str | None
    response_body: str | None


@dataclass(frozen=True, kw_only=True)
class Shown:
    """One delivery with its event and every attempt (`GET /v1/deliveries/{id}`)."""

    id: int
    tenant_id: str
    event_id: str
    endpoint_id: str
    status: str
    attempts: tuple[Attempt, ...] = ()
    spent: int
    budget_started_at: datetime
    next_attempt_at: datetime | None
    message_id: str | None
    locked_until: datetime | None
    next_trigger: str
    last_status_code: int | None
    last_error: str | None
    dead_reason: str | None
    event_created_at: datetime
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    circuit_wait: bool
    event_type: str
    payload: Any
    url: str
    circuit_open_until: datetime | None


@dataclass(frozen=True)
class Locked:
    """A delivery locked for a retry or a resend, with what decides whether it may go."""

    id: int
    status: str
    event_id: str
    endpoint_id: str
    in_flight: bool
    enabled: bool
    circuit_open_until: datetime | None


def list_rows(conn: psycopg.Connection[Any], params: dict[str, Any]) -> list[Listed]:
    """Return the deliveries queries.LIST_DELIVERIES selects with ``params``, newest first."""
    return many(conn, Listed, queries.LIST_DELIVERIES, params)


def shown(conn: psycopg.Connection[Any], delivery_id: int, tenant_id: str | None) -> Shown | None:
    """Return one delivery with its event (attempts left empty), or None."""
    return one(conn, Shown, queries.SHOW_DELIVERY, {"id": delivery_id, "tenant": tenant_id})


def attempts(conn: psycopg.Connection[Any], delivery_id: int) -> tuple[Attempt, ...]:
    """Return every attempt of one delivery, in order."""
    return tuple(many(conn, Attempt, queries.DELIVERY_ATTEMPTS, {"id": delivery_id}))


def lock(conn: psycopg.Connection[Any], delivery_id: int, tenant_id: str | None) -> Locked | None:
    """Lock one delivery FOR UPDATE (in the caller's transaction); None if there is none."""
    return one(conn, Locked, queries.LOCK_DELIVERY, {"id": delivery_id, "tenant": tenant_id})


def lock_dead_letter(
    conn: psycopg.Connection[Any], delivery_id: int, tenant_id: str | None
) -> None:
    """Lock a delivery's dead letter, if any, before the delivery (the order replay takes)."""
    run(conn, queries.LOCK_DEAD_LETTER, {"id": delivery_id, "tenant": tenant_id})


def retry_now(conn: psycopg.Connection[Any], delivery_id: int) -> str | None:
    """Make a pending delivery due now with a new message id; return it (None: not pending)."""
    message: str | None = scalar(conn, queries.RETRY_NOW, {"id": delivery_id})
    return message


def resend(
    conn: psycopg.Connection[Any], delivery_id: int, *, by: str, trigger: str, lease: float
) -> str | None:
    """Re-arm a finished delivery and mark its dead letter replayed; return its message id."""
    params = {"id": delivery_id, "by": by, "trigger": trigger, "lease": lease}
    message: str | None = scalar(conn, queries.RESEND, params)
    return message
