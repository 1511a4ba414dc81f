"""`webhooks deliveries`: inspect deliveries and their attempts, retry or resend one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from worker.cli.common import (
    app,
    connection,
    emit,
    json_option,
    paged,
    queue,
    tenant_option,
    when,
)
from worker.cli.output import fields, moment, table

if TYPE_CHECKING:
    from worker.store.deliveries import Attempt, Shown


@click.group()
def deliveries() -> None:
    """Inspect deliveries and their attempts."""


def with_attempts(
    pairs: list[tuple[str, Any]], attempts: Sequence[Attempt], middle: str = ""
) -> str:
    """Return a delivery's fields, then ``middle``, then the table of its attempts."""
    return fields(pairs) + middle + "\n\n" + attempt_table(attempts)


def attempt_table(attempts: Sequence[Attempt]) -> str:
    """Return a delivery's attempts as a table, responses cut to their first 60 characters."""
    rows = [
        {
            "#": a.number,
            "started": a.started_at,
            "ms": round(a.duration_seconds * 1000),
            "status": a.status_code,
            "error": a.error or "",
            "trigger": a.trigger,
            "response": (a.response_body or "")[:60].replace("\n", " "),
        }
        for a in attempts
    ]
    return table(rows, ["#", "started", "ms", "status", "trigger", "error", "response"])


@deliveries.command("list")
@click.option("--status", type=click.Choice(["pending", "succeeded", "dead"]))
@click.option("--endpoint", "endpoint_id", help="Only this endpoint's deliveries.")
@click.option("--event", "event_id", help="Only this event's deliveries.")
@click.option("--event-type", help="Only deliveries of this event type.")
@click.option("--since", help="Only those created since (2h, or an ISO time).")
@tenant_option
@paged
@json_option
def deliveries_list(
    status: str | None,
    endpoint_id: str | None,
    event_id: str | None,
    event_type: str | None,
    since: str | None,
    tenant: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List deliveries, newest first."""
    from worker.ops import deliveries as store

    with connection() as conn:
        rows = store.list_deliveries(
            conn,
            status=status,
            endpoint_id=endpoint_id,
            event_id=event_id,
            event_type=event_type,
            since=when(since),
            tenant_id=tenant,
            limit=limit,
            offset=offset,
        )
    columns = [
        "id",
        "event_type",
        "url",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    ]
    emit(as_json, rows, lambda: table(rows, columns))


@deliveries.command("show")
@click.argument("delivery_id", type=int)
@tenant_option
@json_option
def deliveries_show(delivery_id: int, tenant: str | None, as_json: bool) -> None:
    """Show one delivery with every attempt."""
    from worker.ops import deliveries as store

    with connection() as conn:
        row = store.show(conn, delivery_id, tenant)
    emit(
        as_json,
        row,
        lambda: with_attempts(
            [
                ("delivery", row.id),
                ("status", row.status),
                ("tenant", row.tenant_id),
                ("event", f"{row.event_id} ({row.event_type})"),
                ("endpoint", f"{row.endpoint_id} ({row.url})"),
                ("attempts", len(row.attempts)),
                ("next attempt", _next_attempt(row)),
                ("last error", row.last_error),
                ("created", row.created_at),
                ("finished", row.finished_at),
            ],
            row.attempts,
        ),
    )


def _next_attempt(row: Shown) -> Any:
    """Return when a delivery goes next, saying so when it waits behind an open circuit."""
    probe = row.circuit_open_until
    if probe is not None:
        return f"after the endpoint's circuit closes (next probe at {moment(probe)})"
    return row.next_attempt_at


@deliveries.command("retry")
@click.argument("delivery_id", type=int)
@tenant_option
@json_option
def deliveries_retry(delivery_id: int, tenant: str | None, as_json: bool) -> None:
    """Attempt a pending delivery now (one attempt, counted like any other)."""
    from worker.ops import deliveries as store

    with connection() as conn:
        done = store.retry(
            conn, queue(), delivery_id, tenant_id=tenant, queue_name=app().settings.queue_name
        )
    emit(as_json, done, f"delivery {delivery_id} queued for an attempt now")


@deliveries.command("resend")
@click.argument("delivery_id", type=int)
@tenant_option
@json_option
def deliveries_resend(delivery_id: int, tenant: str | None, as_json: bool) -> None:
    """Send a succeeded or dead delivery again (same webhook-id, fresh retry budget)."""
    from worker.ops import deliveries as store
    from worker.ops import dlq as letters

    with connection() as conn:
        done = store.resend(
            conn,
            queue(),
            delivery_id,
            tenant_id=tenant,
            queue_name=app().settings.queue_name,
            by=letters.operator(),
        )
    emit(
        as_json,
        done,
        f"delivery {delivery_id} ({done.previous_status}) queued to be sent again "
        f"with webhook-id {done.event_id}",
    )
