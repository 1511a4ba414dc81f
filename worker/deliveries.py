"""Look up deliveries and their attempts for `webhooks deliveries`."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from worker.db import wrapped_errors
from worker.errors import InvalidEndpoint, NotFound

STATUSES = ("pending", "succeeded", "dead")

LIST = """
select d.id, d.tenant_id, d.event_id::text, o.event_type, d.endpoint_id::text, e.url,
       d.status, d.attempts, d.last_status_code, d.last_error,
       case when d.status = 'pending' then d.next_attempt_at end as next_attempt_at,
       d.created_at, d.finished_at
from webhooks.deliveries d
join webhooks.outbox o on o.id = d.event_id
join webhooks.endpoints e on e.id = d.endpoint_id
where (%(status)s::text is null or d.status = %(status)s::text)
  and (%(endpoint)s::uuid is null or d.endpoint_id = %(endpoint)s::uuid)
  and (%(event)s::uuid is null or d.event_id = %(event)s::uuid)
  and (%(tenant)s::text is null or d.tenant_id = %(tenant)s::text)
order by d.id desc
limit %(limit)s offset %(offset)s
"""

SHOW = """
select d.*, d.event_id::text as event_id, d.endpoint_id::text as endpoint_id,
       d.message_id::text as message_id, o.event_type, o.payload, e.url
from webhooks.deliveries d
join webhooks.outbox o on o.id = d.event_id
join webhooks.endpoints e on e.id = d.endpoint_id
where d.id = %(id)s and (%(tenant)s::text is null or d.tenant_id = %(tenant)s)
"""

ATTEMPTS = """
select number, trigger, started_at, duration_seconds, status_code, error_kind, error,
       response_body
from webhooks.attempts where delivery_id = %(id)s order by number
"""


def parse_uuid(kind: str, value: str | None) -> uuid.UUID | None:
    """Return ``value`` as a UUID, or raise NotFound naming the kind of id."""
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(kind, value) from None


def list_deliveries(
    conn: psycopg.Connection[Any],
    *,
    status: str | None = None,
    endpoint_id: str | None = None,
    event_id: str | None = None,
    tenant_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Return deliveries, newest first."""
    if status is not None and status not in STATUSES:
        raise InvalidEndpoint(f"status must be one of {', '.join(STATUSES)}")
    with wrapped_errors():
        rows: list[dict[str, Any]] = conn.execute(
            LIST,
            {
                "status": status,
                "endpoint": parse_uuid("endpoint", endpoint_id),
                "event": parse_uuid("event", event_id),
                "tenant": tenant_id,
                "limit": limit,
                "offset": offset,
            },
        ).fetchall()
    return rows


def show(
    conn: psycopg.Connection[Any], delivery_id: int, tenant_id: str | None = None
) -> dict[str, Any]:
    """Return one delivery with its event and every attempt (no next attempt once finished)."""
    row = with_attempts(conn, SHOW, "delivery", delivery_id, tenant_id)
    if row["status"] != "pending":
        row["next_attempt_at"] = None
    return row


def with_attempts(
    conn: psycopg.Connection[Any], sql: str, kind: str, delivery_id: int, tenant_id: str | None
) -> dict[str, Any]:
    """Return the row ``sql`` finds for a delivery, with its attempts; NotFound otherwise."""
    with wrapped_errors():
        row = conn.execute(sql, {"id": delivery_id, "tenant": tenant_id}).fetchone()
        if row is None:
            raise NotFound(kind, delivery_id)
        attempts = conn.execute(ATTEMPTS, {"id": delivery_id}).fetchall()
    return {**row, "attempts": attempts}
