"""Look up published events and their deliveries: the Python API behind `GET /v1/events`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg

from worker.errors import NotFound
from worker.ops import deliveries
from worker.store import events as rows
from worker.store.db import wrapped_errors
from worker.store.events import Event, ShownEvent

#: Deliveries shown with one event: one per endpoint it matched, so few.
MAX_DELIVERIES = 1000


def published_before(conn: psycopg.Connection[Any], event_id: str) -> bool:
    """Tell whether an event just published in ``conn``'s open transaction already existed.

    True when `publish` answered a repeated idempotency key with the first event's id.
    """
    with wrapped_errors():
        return rows.published_before(conn, event_id)


def list_events(
    conn: psycopg.Connection[Any],
    *,
    tenant_id: str | None = None,
    event_type: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> list[Event]:
    """Return events without their payloads, newest first.

    ``after`` is the id of the last event of the previous page (keyset pagination; ids are
    UUIDv7, so id order is creation order).
    """
    after_id = deliveries.parse_uuid("event", after)
    with wrapped_errors():
        return rows.list_rows(conn, tenant_id, event_type, after_id, limit)


def show(
    conn: psycopg.Connection[Any], event_id: str, *, tenant_id: str | None = None
) -> ShownEvent:
    """Return one event with its payload and its deliveries; NotFound otherwise."""
    with wrapped_errors():
        row = rows.shown(conn, deliveries.parse_uuid("event", event_id), tenant_id)
    if row is None:
        raise NotFound("event", event_id)
    found = deliveries.list_deliveries(
        conn, event_id=row.id, tenant_id=tenant_id, limit=MAX_DELIVERIES
    )
    return replace(row, deliveries=tuple(found))
