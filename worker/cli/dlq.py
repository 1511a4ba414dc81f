"""`webhooks dlq`: inspect and replay dead letters."""

from __future__ import annotations

import contextlib
import json
import sys

import click

from worker.cli.common import (
    F,
    app,
    connection,
    emit,
    json_option,
    paged,
    queue,
    tenant_option,
    when,
)
from worker.cli.deliveries import with_attempts
from worker.cli.output import table
from worker.policy.retry import DEAD_REASONS


@click.group()
def dlq() -> None:
    """Inspect, replay and discard dead letters."""


def selection_options(func: F) -> F:
    """Add the dead-letter filters shared by list and replay."""
    for option in reversed(
        [
            click.option("--endpoint", "endpoint_id", help="Only this endpoint's."),
            click.option("--event-type", help="Only this event type's."),
            click.option("--since", help="Only those that died since (2h, or an ISO time)."),
            click.option(
                "--reason",
                type=click.Choice(DEAD_REASONS),
            ),
            tenant_option,
        ]
    ):
        func = option(func)
    return func


@dlq.command("list")
@selection_options
@click.option("--history", is_flag=True, help="Include dead letters already replayed.")
@paged
@json_option
def dlq_list(
    endpoint_id: str | None,
    event_type: str | None,
    since: str | None,
    reason: str | None,
    tenant: str | None,
    history: bool,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List dead letters, newest first."""
    from worker.ops import dlq as letters

    selection = letters.Selection(
        endpoint_id=endpoint_id,
        event_type=event_type,
        since=when(since),
        reason=reason,
        tenant_id=tenant,
    )
    with connection() as conn:
        rows = letters.list_letters(conn, selection, limit=limit, offset=offset, history=history)
    columns = [
        "delivery_id",
        "event_type",
        "url",
        "reason",
        "attempts",
        "last_status_code",
        "died_at",
        "replay_count",
    ]
    emit(as_json, rows, lambda: table(rows, columns))


@dlq.command("show")
@click.argument("delivery_id", type=int)
@tenant_option
@json_option
def dlq_show(delivery_id: int, tenant: str | None, as_json: bool) -> None:
    """Show a dead letter: its event, endpoint and every attempt."""
    from worker.ops import dlq as letters

    with connection() as conn:
        row = letters.show(conn, delivery_id, tenant)
    emit(
        as_json,
        row,
        lambda: with_attempts(
            [
                ("delivery", row.delivery_id),
                ("reason", row.reason),
                ("died", row.died_at),
                ("tenant", row.tenant_id),
                ("event", f"{row.event_id} ({row.event_type})"),
                ("event created", row.event_created_at),
                ("endpoint", f"{row.endpoint_id} ({row.url})"),
                ("endpoint enabled", row.enabled),
                ("attempts", len(row.attempts)),
                ("last error", row.last_error),
                ("replays", row.replay_count),
                ("replayed at", row.replayed_at),
                ("ordering key", _ordering(row.ordering_key, row.order_broken)),
                (
                    "discarded",
                    f"{row.discarded_at} by {row.discarded_by}" if row.discarded_at else None,
                ),
            ],
            row.attempts,
            middle="\npayload: " + json.dumps(row.payload)[:2000],
        ),
    )


@dlq.command("replay")
@click.option("--id", "ids", multiple=True, type=int, help="A dead letter's delivery id (repeat).")
@selection_options
@click.option("--all", "everything", is_flag=True, help="Every current dead letter.")
@click.option("--limit", type=click.IntRange(1), help="Replay at most this many.")
@click.option("--dry-run", is_flag=True, help="Count what would be replayed; change nothing.")
@click.option("--enable-endpoint", is_flag=True, help="Enable disabled endpoints selected.")
@json_option
def dlq_replay(
    ids: tuple[int, ...],
    endpoint_id: str | None,
    event_type: str | None,
    since: str | None,
    reason: str | None,
    tenant: str | None,
    everything: bool,
    limit: int | None,
    dry_run: bool,
    enable_endpoint: bool,
    as_json: bool,
) -> None:
    """Replay dead letters: fresh attempts, same webhook-id, each enqueued once."""
    from worker.ops import dlq as letters

    selection = letters.Selection(
        ids=ids,
        endpoint_id=endpoint_id,
        event_type=event_type,
        since=when(since),
        reason=reason,
        tenant_id=tenant,
        everything=everything,
    )
    if selection.is_empty():
        raise click.UsageError(
            "choose what to replay: --id, --endpoint, --event-type, "
            "--since, --reason, --tenant or --all"
        )
    with connection() as conn:
        show_bar = sys.stderr.isatty() and not as_json and not dry_run
        total = letters.count(conn, selection) if show_bar else 0
        if limit is not None:
            total = min(total, limit)
        with (
            click.progressbar(length=total, label="replaying", file=sys.stderr, show_pos=True)
            if show_bar
            else contextlib.nullcontext() as bar
        ):
            result = letters.replay(
                conn,
                None if dry_run else queue(),
                selection,
                limit=limit,
                dry_run=dry_run,
                enable_endpoints=enable_endpoint,
                queue_name=app().settings.queue_name,
                progress=bar.update if bar is not None else None,
            )
    if dry_run:
        lines = [f"would replay {_dead_letters(result.replayed)}"]
        lines += [
            f"endpoint {ep} is disabled: the replay needs --enable-endpoint"
            for ep in result.disabled_endpoints
            if not enable_endpoint
        ]
    else:
        lines = [f"enabled endpoint {ep}" for ep in result.enabled_endpoints]
        lines.append(f"replayed {_dead_letters(result.replayed)}")
        if result.out_of_order:
            lines.append(
                f"{result.out_of_order} of them arrive out of order: later events of their"
                " ordering key were delivered already"
            )
    emit(as_json, result, "\n".join(lines))


@dlq.command("discard")
@click.option("--id", "ids", multiple=True, type=int, help="A dead letter's delivery id (repeat).")
@selection_options
@click.option("--all", "everything", is_flag=True, help="Every current dead letter.")
@click.option("--dry-run", is_flag=True, help="Count what would be discarded; change nothing.")
@json_option
def dlq_discard(
    ids: tuple[int, ...],
    endpoint_id: str | None,
    event_type: str | None,
    since: str | None,
    reason: str | None,
    tenant: str | None,
    everything: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Give dead letters up for good; the ordering keys they held up go on.

    Discarded dead letters leave the list (dlq list --history shows them) and no replay
    takes them. Under WEBHOOKS_ORDERED_ON_DEATH=block this is how a key whose head is dead
    goes on without it.
    """
    from worker.ops import dlq as letters

    selection = letters.Selection(
        ids=ids,
        endpoint_id=endpoint_id,
        event_type=event_type,
        since=when(since),
        reason=reason,
        tenant_id=tenant,
        everything=everything,
    )
    if selection.is_empty():
        raise click.UsageError(
            "choose what to discard: --id, --endpoint, --event-type, "
            "--since, --reason, --tenant or --all"
        )
    with connection() as conn:
        result = letters.discard(
            conn,
            None if dry_run else queue(),
            selection,
            dry_run=dry_run,
            queue_name=app().settings.queue_name,
        )
    if dry_run:
        human = f"would discard {_dead_letters(result.discarded)}"
    else:
        human = f"discarded {_dead_letters(result.discarded)}"
        if result.woken:
            human += f"; {result.woken} ordering key(s) go on"
    emit(as_json, result, human)


def _ordering(key: str | None, broken: bool) -> str | None:
    """Say which ordering key a dead letter held, and whether its key went on without it."""
    if key is None:
        return None
    shown = key or "(none: the endpoint's events as a whole)"
    return shown + (" - later events went on: it broke the order" if broken else "")


def _dead_letters(count: int) -> str:
    return f"{count} dead letter{'' if count == 1 else 's'}"
