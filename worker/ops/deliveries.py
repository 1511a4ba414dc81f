"""Look up deliveries and their attempts, and retry or resend one: `webhooks deliveries`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg

from worker.errors import InvalidEndpoint, NotFound, WebhooksError, WrongState
from worker.outages import first_line
from worker.queue import LEASE_SECONDS, BrokerError, Queue, as_queue
from worker.store import deliveries as rows
from worker.store.db import wrapped_errors
from worker.store.deliveries import Listed, Locked, Shown

STATUSES = ("pending", "succeeded", "dead")


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
    event_type: str | None = None,
    since: datetime | None = None,
    tenant_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
    after: int | None = None,
) -> list[Listed]:
    """Return deliveries, newest first (``since``: created at or after it).

    ``after`` is the id of the last delivery of the previous page (keyset pagination: a
    page never skips or repeats rows written meanwhile, and costs the same at any depth).
    """
    if status is not None and status not in STATUSES:
        raise InvalidEndpoint(f"status must be one of {', '.join(STATUSES)}")
    with wrapped_errors():
        return rows.list_rows(
            conn,
            {
                "status": status,
                "endpoint": parse_uuid("endpoint", endpoint_id),
                "event": parse_uuid("event", event_id),
                "event_type": event_type,
                "since": since,
                "tenant": tenant_id,
                "limit": limit,
                "offset": offset,
                "after": after,
            },
        )


def show(conn: psycopg.Connection[Any], delivery_id: int, tenant_id: str | None = None) -> Shown:
    """Return one delivery with its event and every attempt (no next attempt once finished).

    ``circuit_open_until`` is set while a pending delivery waits behind its endpoint's open
    circuit: it goes after the probe at that time succeeds, whatever ``next_attempt_at`` says.
    """
    with wrapped_errors():
        row = rows.shown(conn, delivery_id, tenant_id)
        if row is None:
            raise NotFound("delivery", delivery_id)
        row = replace(row, attempts=rows.attempts(conn, delivery_id))
    if row.status != "pending":
        row = replace(row, next_attempt_at=None, circuit_open_until=None)
    return row


# -- retry and resend -----------------------------------------------------------------------


@dataclass(frozen=True)
class Rearmed:
    """A delivery put back on the queue by `retry` or `resend`."""

    delivery_id: int
    event_id: str
    endpoint_id: str
    previous_status: str
    trigger: str
    message_id: str


def retry(
    conn: psycopg.Connection[Any],
    broker: Queue | Any,
    delivery_id: int,
    *,
    tenant_id: str | None = None,
    queue_name: str = "webhooks",
) -> Rearmed:
    """Attempt a pending delivery now instead of at its scheduled time.

    The attempt counts against the schedule like any other. A finished delivery is refused
    (`resend` or `dlq replay` send it again), and so is one being attempted right now.
    """
    with wrapped_errors(), conn.transaction():
        row = _locked(conn, delivery_id, tenant_id)
        if row.status == "succeeded":
            raise WrongState(
                f"delivery {delivery_id} already succeeded: "
                f"`webhooks deliveries resend {delivery_id}` sends it again",
                api=f"delivery {delivery_id} already succeeded: "
                f"POST /v1/deliveries/{delivery_id}/resend sends it again",
            )
        if row.status == "dead":
            raise WrongState(
                f"delivery {delivery_id} is dead: `webhooks dlq replay --id {delivery_id}` "
                f"(or `webhooks deliveries resend {delivery_id}`) sends it again",
                api=f"delivery {delivery_id} is dead: POST /v1/dead-letters/replay with "
                f'{{"ids": [{delivery_id}]}} (or POST /v1/deliveries/{delivery_id}/resend) '
                "sends it again",
            )
        if row.in_flight:
            raise WrongState(f"delivery {delivery_id} is being attempted right now")
        if row.circuit_open_until is not None:
            # Queued now, it would only wait behind the circuit: say what would help.
            ep = row.endpoint_id
            waiting = (
                f"endpoint {ep}'s circuit is open (next probe at"
                f" {row.circuit_open_until:%Y-%m-%d %H:%M:%S} UTC): its deliveries wait for"
                " the probe; "
            )
            raise WrongState(
                f"{waiting}`webhooks endpoint reset {ep}` closes it now",
                api=f"{waiting}POST /v1/endpoints/{ep}/enable closes it now",
            )
        armed = rows.retry_now(conn, delivery_id)
    assert armed is not None
    done = Rearmed(delivery_id, row.event_id, row.endpoint_id, "pending", "scheduled", armed)
    _push(broker, queue_name, done, "its next scheduler pass enqueues it")
    return done


def resend(
    conn: psycopg.Connection[Any],
    broker: Queue | Any,
    delivery_id: int,
    *,
    tenant_id: str | None = None,
    queue_name: str = "webhooks",
    by: str = "unknown",
) -> Rearmed:
    """Send a succeeded or dead delivery again: same event id, fresh budget, trigger resend.

    A dead delivery's dead letter is marked replayed with this resend in its history, as
    `dlq replay` does. A pending delivery is refused (`retry` attempts it now), and so is a
    delivery to a disabled endpoint (enable it first).
    """
    with wrapped_errors(), conn.transaction():
        rows.lock_dead_letter(conn, delivery_id, tenant_id)
        row = _locked(conn, delivery_id, tenant_id)
        if row.status == "pending":
            raise WrongState(
                f"delivery {delivery_id} is still pending: "
                f"`webhooks deliveries retry {delivery_id}` attempts it now",
                api=f"delivery {delivery_id} is still pending: "
                f"POST /v1/deliveries/{delivery_id}/retry attempts it now",
            )
        if not row.enabled:
            raise WrongState(
                f"endpoint {row.endpoint_id} is disabled: "
                f"`webhooks endpoint enable {row.endpoint_id}` first",
                api=f"endpoint {row.endpoint_id} is disabled: "
                f"POST /v1/endpoints/{row.endpoint_id}/enable first",
            )
        armed = rows.resend(conn, delivery_id, by=by, trigger="resend", lease=LEASE_SECONDS)
    assert armed is not None
    done = Rearmed(delivery_id, row.event_id, row.endpoint_id, row.status, "resend", armed)
    _push(broker, queue_name, done, "the relay enqueues it within its lease")
    return done


def _locked(conn: psycopg.Connection[Any], delivery_id: int, tenant_id: str | None) -> Locked:
    row = rows.lock(conn, delivery_id, tenant_id)
    if row is None:
        raise NotFound("delivery", delivery_id)
    return row


def _push(broker: Queue | Any, queue_name: str, done: Rearmed, fallback: str) -> None:
    # Committed before the push: if the push fails, Postgres still holds the delivery as
    # pending and the relay's scheduler enqueues it (guarantee 3).
    try:
        as_queue(broker, queue_name).enqueue([(done.delivery_id, done.message_id)])
    except BrokerError as exc:
        raise WebhooksError(
            f"delivery {done.delivery_id} set in Postgres; could not enqueue it ("
            f"{first_line(exc)}): {fallback}"
        ) from exc
