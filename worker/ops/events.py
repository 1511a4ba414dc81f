"""Look up published events and their deliveries: the Python API behind `GET /v1/events`."""

from __future__ import annotations

from typing import Any

import psycopg

from worker.errors import NotFound
from worker.ops import deliveries
from worker.store.db import wrapped_errors

LIST = """
select id::text as id, tenant_id, event_type, idempotency_key, created_at, relayed_at
from webhooks.outbox
where (%(tenant)s::text is null or tenant_id = %(tenant)s::text)
  and (%(event_type)s::text is null or event_type = %(event_type)s::text)
  and (%(after)s::uuid is null or id < %(after)s::uuid)
order by id desc
limit %(limit)s
"""

SHOW = """
select id::text as id, tenant_id, event_type, idempotency_key, payload, created_at, relayed_at
from webhooks.outbox
where id = %(id)s and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)
"""

#: Deliveries shown with one event: one per endpoint it matched, so few.
MAX_DELIVERIES = 1000


def list_events(
    conn: psycopg.Connection[Any],
    *,
    tenant_id: str | None = None,
    event_type: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Return events without their payloads, newest first.

    ``after`` is the id of the last event of the previous page (keyset pagination; ids are
    UUIDv7, so id order is creation order).
    """
    with wrapped_errors():
        rows: list[dict[str, Any]] = conn.execute(
            LIST,
            {
                "tenant": tenant_id,
                "event_type": event_type,
                "after": deliveries.parse_uuid("event", after),
                "limit": limit,
            },
        ).fetchall()
    return rows


def show(
    conn: psycopg.Connection[Any], event_id: str, *, tenant_id: str | None = None
) -> dict[str, Any]:
    """Return one event with its payload and its deliveries; NotFound otherwise."""
    with wrapped_errors():
        row = conn.execute(
            SHOW, {"id": deliveries.parse_uuid("event", event_id), "tenant": tenant_id}
        ).fetchone()
    if row is None:
        raise NotFound("event", event_id)
    found = deliveries.list_deliveries(
        conn, event_id=row["id"], tenant_id=tenant_id, limit=MAX_DELIVERIES
    )
    return {**row, "deliveries": found}
