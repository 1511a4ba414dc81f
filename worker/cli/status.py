"""`webhooks status`, `check` and `prune`: the state of the pipeline, its invariants, retention."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from worker.cli.common import (
    DURATION,
    app,
    connection,
    duration,
    emit,
    json_option,
    queue,
    tenant_option,
)
from worker.cli.output import fields
from worker.settings import format_duration

if TYPE_CHECKING:
    from worker.ops.prune import Pruned
    from worker.store.status import Status


@click.command()
@tenant_option
@json_option
def status(tenant: str | None, as_json: bool) -> None:
    """Show outbox backlog and lag, deliveries by state, dead letters and queue depth."""
    from worker.ops import status as state

    with connection() as conn:
        row = state.status(conn, queue(), app().settings.queue_name, tenant_id=tenant)
    emit(as_json, row, lambda: _status_fields(row, tenant))


def _status_fields(row: Status, tenant: str | None) -> str:
    age = row.outbox_oldest_age_seconds
    return fields(
        [
            ("outbox backlog", row.outbox_backlog),
            ("oldest unrelayed", format_duration(age) if age is not None else None),
            ("deliveries pending", row.pending),
            ("  queued", row.queued),
            ("  in flight", row.in_flight),
            ("  due, not queued", row.due),
            ("  waiting to retry", row.waiting),
            ("  behind open circuits", row.behind_open_circuits),
            ("  behind their ordering key", row.behind_their_key),
            ("dead letters", row.dead_letters),
            ("ordering keys blocked", row.blocked_keys),
            *(
                (
                    f"  {b.ordering_key or '(no key)'}",
                    f"endpoint {b.endpoint_id}: delivery {b.delivery_id} dead since"
                    f" {b.died_at:%Y-%m-%d %H:%M:%S} UTC, {b.waiting} waiting"
                    " (dlq replay or dlq discard it)",
                )
                for b in row.blocked
            ),
            ("endpoints", row.endpoints),
            ("disabled endpoints", row.disabled_endpoints),
            ("open circuits", row.open_circuits),
            (
                "queue depth" + (" (all tenants)" if tenant is not None else ""),
                row.queue_depth if row.queue_depth is not None else "unknown (broker unreachable)",
            ),
        ]
    )


@click.command()
@click.option("--older-than", required=True, help="Retention period with a unit, e.g. 30d.")
@click.option("--include-dead", is_flag=True, help="Also delete dead letters not replayed.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option(
    "--yes", "-y", is_flag=True, help="Prune a retention under an hour without asking first."
)
@json_option
def prune(older_than: str, include_dead: bool, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Delete finished events older than the retention period, in short batches.

    A retention under an hour asks first on a terminal; without one it needs --yes.
    """
    from worker.ops.prune import is_short
    from worker.ops.prune import prune as run_prune

    retention = duration(older_than, "--older-than")
    ask = is_short(retention) and not dry_run and not yes
    if ask and not sys.stdin.isatty():
        raise click.UsageError(
            f"--older-than {older_than} keeps less than an hour of history:"
            " pass --yes to prune it (or --dry-run to count it)"
        )
    cutoff = datetime.now(UTC) - timedelta(seconds=retention)
    with connection() as conn:
        if ask:
            _confirm_prune(run_prune(conn, cutoff, include_dead=include_dead, dry_run=True), cutoff)
        result = run_prune(conn, cutoff, include_dead=include_dead, dry_run=dry_run)
    if dry_run:
        human = f"would delete {_counts(result)} older than {cutoff:%Y-%m-%d %H:%M} UTC"
    else:
        human = f"deleted {_counts(result)}"
    emit(as_json, result, human)


def _counts(result: Pruned) -> str:
    return (
        f"{result.events} events, {result.deliveries} deliveries, "
        f"{result.attempts} attempts, {result.dead_letters} dead letters"
    )


def _confirm_prune(going: Pruned, cutoff: datetime) -> None:
    """Say what a short retention deletes and ask; exit 1 unless the operator agrees."""
    click.echo(
        f"this deletes {_counts(going)} older than {cutoff:%Y-%m-%d %H:%M:%S} UTC.", err=True
    )
    if not click.confirm("Prune them?", default=False, err=True):
        click.echo("not pruned", err=True)
        sys.exit(1)


@click.command()
@click.option(
    "--grace",
    type=DURATION,
    default="2m",
    show_default=True,
    help="How overdue a pending delivery may be before it counts as stuck.",
)
@json_option
def check(grace: float, as_json: bool) -> None:
    """Check the delivery invariants; exit 1 and list what is off."""
    from worker.ops import status as state

    with connection() as conn:
        found = state.check(conn, grace=grace)
    broken = {name: rows for name, rows in found.items() if rows}
    emit(as_json, {"ok": not broken, "violations": found}, lambda: _violations(found))
    if broken:
        sys.exit(1)


def _violations(found: dict[str, list[Any]]) -> str:
    """Return one line per invariant, ok or FAIL, with up to ten of the rows that break it."""
    from worker.ops import status as state

    lines = []
    for inv in state.INVARIANTS:
        rows = found[inv.name]
        mark = click.style("ok  ", fg="green") if not rows else click.style("FAIL", fg="red")
        lines.append(f"{mark} {inv.name}" + (f": {len(rows)} x {inv.description}" if rows else ""))
        lines += [
            "       " + ", ".join(f"{k}={v}" for k, v in vars(row).items()) for row in rows[:10]
        ]
    return "\n".join(lines)
