"""Published events' rows (webhooks.outbox), as `GET /v1/events` shows them.

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from worker.store import queries
from worker.store.deliveries import Listed
from worker.store.rows import many, one, scalar


@dataclass(frozen=True)
class Event:
    """A published event, without its payload (lists)."""

    id: str
    tenant_id: str
    event_type: str
    idempotency_key: str | None
    ordering_key: str | None
    created_at: datetime
    relayed_at: datetime | None


@dataclass(frozen=True)
class ShownEvent:
    """A published event with its payload and (set by the caller) its deliveries."""

    id: str
    tenant_id: str
    event_type: str
    idempotency_key: str | None
    ordering_key: str | None
    payload: Any
    created_at: datetime
    relayed_at: datetime | None
    deliveries: tuple[Listed, ...] = ()


def published_before(conn: psycopg.Connection[Any], event_id: str) -> bool:
    """Tell whether an event was created before the current transaction began."""
    return bool(scalar(conn, queries.PUBLISHED_BEFORE, {"id": event_id}))


def list_rows(
    conn: psycopg.Connection[Any],
    tenant_id: str | None,
    event_type: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[Event]:
    """Return events by id, newest first, before ``after`` when given."""
    params = {"tenant": tenant_id, "event_type": event_type, "after": after, "limit": limit}
    return many(conn, Event, queries.LIST_EVENTS, params)


def shown(
    conn: psycopg.Connection[Any], event_id: uuid.UUID | None, tenant_id: str | None
) -> ShownEvent | None:
    """Return one event with its payload (deliveries left empty), or None."""
    return one(conn, ShownEvent, queries.SHOW_EVENT, {"id": event_id, "tenant": tenant_id})


@dataclass(frozen=True)
class Created:
    """A test event's one delivery, created already claimed (`create_test_event`)."""

    id: int
    message_id: str


def create_test_event(
    conn: psycopg.Connection[Any],
    *,
    event_id: uuid.UUID,
    tenant_id: str,
    event_type: str,
    payload: object,
    endpoint_id: str,
    lease: float,
) -> Created:
    """Write a test event addressed to one endpoint, marked relayed, with its delivery."""
    params = {
        "event_id": event_id,
        "tenant": tenant_id,
        "type": event_type,
        "payload": payload,
        "endpoint": endpoint_id,
        "lease": lease,
    }
    created = one(conn, Created, queries.CREATE_TEST_EVENT, params)
    assert created is not None
    return created
