"""The `webhooks` command line: every command takes --json; errors are one line on stderr.

Exit status: 0 success, 1 runtime failure, 2 usage error or bad setting.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from producers import publish as publish_event
from worker.errors import (
    ConfigError,
    InvalidEndpoint,
    MigrationError,
    PublishError,
    WebhooksError,
)
from worker.observe import logs
from worker.ops.endpoints import Endpoint, Endpoints, parse_header
from worker.output import emit_json, fields, table
from worker.policy.retry import DEAD_REASONS
from worker.queue import Queue
from worker.queue import from_url as broker_from_url
from worker.settings import Settings, format_duration, parse_duration
from worker.store import migrate as migrations
from worker.store.db import connect, wrapped_errors
from worker.store.vault import Vault

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("webhooks")


class Cli(click.Group):
    """Turn expected errors into one line on stderr and the documented exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, PublishError, InvalidEndpoint) as exc:
            # Bad settings and bad arguments are usage errors: nothing was written.
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except WebhooksError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except click.UsageError as exc:
            # One line like every other error (click's own display adds the usage first).
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except UnicodeEncodeError:
            # An argument that was not UTF-8 on the command line (Python keeps its bytes as
            # lone surrogates) cannot be sent to Postgres: a usage error, not a traceback.
            click.echo("error: an argument is not valid UTF-8 text", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.exit(130)


def json_option(func: F) -> F:
    """Add --json to a command."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(
        func
    )


@functools.cache
def settings() -> Settings:
    """Build the settings from the environment once per command."""
    return Settings.from_env()


def require_schema(conf: Settings) -> None:
    """Refuse to start a daemon on a schema older than the code; wait out an absent Postgres.

    A database that cannot be reached is left to the daemon, which retries until it can; a
    reachable one without the schema this code needs is an operator's mistake, said in one
    line before anything starts.
    """
    from worker.store import db, migrate

    try:
        conn = db.connect(conf.require_database_url())
    except WebhooksError:
        return
    try:
        with db.wrapped_errors():
            current = migrate.current_version(conn)
    except MigrationError:
        raise
    except WebhooksError:
        return  # a connection lost at this moment: the daemon's own retries deal with it
    finally:
        conn.close()
    if current < migrate.expected_version():
        raise MigrationError("the webhooks schema is missing or behind: run `webhooks migrate`")


def duration(text: str) -> float:
    """Parse a duration option or fail with a usage error."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="webhooks-outbox")
def main() -> None:
    """Deliver webhooks from a Postgres outbox, with retries, dead letters and replay."""


# -- migrate ------------------------------------------------------------------------------


@main.command()
@click.option("--status", "show_status", is_flag=True, help="List applied and pending versions.")
@json_option
def migrate(show_status: bool, as_json: bool) -> None:
    """Apply pending schema migrations (or list them with --status)."""
    with connect(settings().require_database_url()) as conn, wrapped_errors():
        if show_status:
            rows = [
                {
                    "version": s.version,
                    "name": s.name,
                    "state": "changed" if s.changed else ("applied" if s.applied_at else "pending"),
                    "applied_at": s.applied_at,
                }
                for s in migrations.status(conn)
            ]
            if as_json:
                emit_json(rows)
            else:
                click.echo(table(rows, ["version", "name", "state", "applied_at"]))
            return
        done = migrations.migrate(conn)
        version = migrations.current_version(conn)
    if as_json:
        emit_json({"applied": [f"{m.version:04d}_{m.name}" for m in done], "version": version})
    elif done:
        for m in done:
            click.echo(f"applied {m.version:04d}_{m.name}")
        click.echo(f"schema at version {version}")
    else:
        click.echo(f"nothing to do: schema at version {version}")


# -- endpoint -----------------------------------------------------------------------------


@main.group()
def endpoint() -> None:
    """Register and manage the endpoints events are delivered to."""


def _registry(conn: Any) -> Endpoints:
    conf = settings()
    return Endpoints(
        conn,
        Vault(conf.secret_key),
        allowed_networks=conf.allowed_networks,
        warn=lambda text: click.echo(f"warning: {text}", err=True),
        operations_tenant=conf.operations_tenant,
    )


def _secret_written(registry: Endpoints) -> None:
    """Say, once a secret is written, that it was stored plain (no key is set)."""
    if not registry.vault.encrypts:
        click.echo(
            "warning: WEBHOOKS_SECRET_KEY is not set: the secret is stored unencrypted", err=True
        )


def _endpoint_fields(ep: Endpoint) -> list[tuple[str, Any]]:
    return [
        ("id", ep.id),
        ("tenant", ep.tenant_id),
        ("url", ep.url),
        ("description", ep.description or None),
        ("event types", list(ep.event_types) if ep.event_types else "all"),
        ("headers", ", ".join(ep.headers) or None),
        ("rate limit", f"{ep.rate_limit}/s" if ep.rate_limit else None),
        ("enabled", ep.enabled),
        ("disabled reason", ep.disabled_reason),
        ("disabled at", ep.disabled_at),
        ("failing since", ep.failing_since),
        ("consecutive failures", ep.consecutive_failures),
        ("circuit", ep.circuit),
        ("secrets", ep.secrets),
        ("created", ep.created_at),
    ]


tenant_option = click.option("--tenant", default=None, help="Only act within this tenant.")


@endpoint.command("add")
@click.argument("url")
@click.option("--tenant", default="default", show_default=True, help="Tenant owning the endpoint.")
@click.option("--event-type", "event_types", multiple=True, help="Deliver only this type (repeat).")
@click.option("--header", "headers", multiple=True, help="Extra header 'Name: value' (repeat).")
@click.option("--rate-limit", type=click.IntRange(min=1), help="Requests per second at most.")
@click.option("--description", default="", help="Free text shown in listings.")
@json_option
def endpoint_add(
    url: str,
    tenant: str,
    event_types: tuple[str, ...],
    headers: tuple[str, ...],
    rate_limit: int | None,
    description: str,
    as_json: bool,
) -> None:
    """Create an endpoint and print its id and signing secret."""
    parsed = dict(parse_header(h) for h in headers)
    with connect(settings().require_database_url()) as conn:
        registry = _registry(conn)
        ep, secret = registry.add(
            url,
            tenant_id=tenant,
            event_types=event_types or None,
            headers=parsed,
            rate_limit=rate_limit,
            description=description,
        )
    _secret_written(registry)
    if as_json:
        emit_json({**_as_dict(ep), "secret": secret})
    else:
        click.echo(fields([*_endpoint_fields(ep), ("secret", secret)]))


def _as_plain(value: Any) -> dict[str, Any]:
    from worker.output import plain

    out: dict[str, Any] = plain(value)
    return out


def _as_dict(ep: Endpoint) -> dict[str, Any]:
    from worker.output import plain

    out: dict[str, Any] = plain(ep)
    return out


@endpoint.command("update")
@click.argument("endpoint_id")
@click.option("--url", default=None, help="New URL (checked as by add).")
@click.option(
    "--event-type",
    "event_types",
    multiple=True,
    help="Deliver only these types (repeat); replaces the filter.",
)
@click.option("--all-event-types", is_flag=True, help="Remove the filter: deliver every type.")
@click.option(
    "--header",
    "headers",
    multiple=True,
    help="Header 'Name: value' (repeat); replaces all custom headers.",
)
@click.option("--clear-headers", is_flag=True, help="Remove every custom header.")
@click.option("--rate-limit", type=click.IntRange(min=1), help="Requests per second at most.")
@click.option("--no-rate-limit", is_flag=True, help="Remove the rate limit.")
@click.option("--description", default=None, help="Free text shown in listings.")
@tenant_option
@json_option
def endpoint_update(
    endpoint_id: str,
    url: str | None,
    event_types: tuple[str, ...],
    all_event_types: bool,
    headers: tuple[str, ...],
    clear_headers: bool,
    rate_limit: int | None,
    no_rate_limit: bool,
    description: str | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """Change only what is given; print the endpoint as it is now.

    --event-type and --header replace the filter and the custom headers with those given;
    --all-event-types, --clear-headers and --no-rate-limit remove them.
    """
    for given, clear, names in (
        (event_types, all_event_types, "--event-type and --all-event-types"),
        (headers, clear_headers, "--header and --clear-headers"),
        (rate_limit is not None, no_rate_limit, "--rate-limit and --no-rate-limit"),
    ):
        if given and clear:
            raise click.UsageError(f"{names} cannot be combined")
    changes: dict[str, Any] = {"url": url, "description": description}
    if event_types or all_event_types:
        changes["event_types"] = event_types or None
    if headers or clear_headers:
        changes["headers"] = dict(parse_header(h) for h in headers)
    if rate_limit is not None or no_rate_limit:
        changes["rate_limit"] = rate_limit
    if all(v is None for v in (url, description)) and len(changes) == 2:
        raise click.UsageError(
            "nothing to update: give --url, --event-type, --all-event-types, --header, "
            "--clear-headers, --rate-limit, --no-rate-limit or --description"
        )
    with connect(settings().require_database_url()) as conn:
        ep = _registry(conn).update(endpoint_id, tenant_id=tenant, **changes)
    if as_json:
        emit_json(ep)
    else:
        click.echo(fields(_endpoint_fields(ep)))


@endpoint.command("test")
@click.argument("endpoint_id")
@click.option(
    "--event-type",
    default="webhooks.test",
    show_default=True,
    help="The test event's type (the endpoint's filter does not apply).",
)
@tenant_option
@json_option
def endpoint_test(endpoint_id: str, event_type: str, tenant: str | None, as_json: bool) -> None:
    """Send a test event to one endpoint now and print the attempt; exit 1 unless 2xx.

    The event is recorded like any other (trigger `test` in its attempts) and, if the attempt
    fails, retried on the schedule.
    """
    from worker.ops.ping import send_test_event

    conf = settings()
    with connect(conf.require_database_url()) as conn:
        attempt = send_test_event(conn, conf, endpoint_id, event_type=event_type, tenant_id=tenant)
    if as_json:
        emit_json(attempt)
    else:
        excerpt = (attempt.response_body or "")[:500]
        click.echo(
            fields(
                [
                    ("delivery", attempt.delivery_id),
                    ("event", f"{attempt.event_id} ({attempt.event_type})"),
                    ("url", attempt.url),
                    ("status", attempt.status_code),
                    ("duration", f"{attempt.duration_seconds * 1000:.0f} ms"),
                    ("outcome", attempt.outcome),
                    ("error", attempt.error),
                    ("delivery status", attempt.delivery_status),
                    ("next attempt", attempt.next_attempt_at),
                    ("endpoint disabled", attempt.endpoint_disabled),
                ]
            )
        )
        if excerpt:
            click.echo("response: " + excerpt.replace("\n", " "))
    if not attempt.ok:
        sys.exit(1)


@endpoint.command("list")
@tenant_option
@json_option
def endpoint_list(tenant: str | None, as_json: bool) -> None:
    """List endpoints."""
    with connect(settings().require_database_url()) as conn:
        eps = _registry(conn).list(tenant_id=tenant)
    if as_json:
        emit_json(eps)
        return
    rows = [
        {
            "id": ep.id,
            "tenant": ep.tenant_id,
            "url": ep.url,
            "types": list(ep.event_types) if ep.event_types else "all",
            "enabled": ep.enabled,
            "circuit": ep.circuit,
            "failures": ep.consecutive_failures,
            "description": ep.description,
        }
        for ep in eps
    ]
    click.echo(
        table(
            rows,
            ["id", "tenant", "url", "types", "enabled", "circuit", "failures", "description"],
        )
    )


@endpoint.command("show")
@click.argument("endpoint_id")
@tenant_option
@json_option
def endpoint_show(endpoint_id: str, tenant: str | None, as_json: bool) -> None:
    """Show one endpoint."""
    with connect(settings().require_database_url()) as conn:
        registry = _registry(conn)
        ep = registry.get(endpoint_id, tenant_id=tenant)
        health = registry.health(endpoint_id, tenant_id=tenant)
    if as_json:
        emit_json({**_as_dict(ep), "health": health})
        return
    rate = health["success_rate_24h"]
    click.echo(
        fields(
            [
                *_endpoint_fields(ep),
                ("attempts (24h)", health["attempts_24h"]),
                ("success rate (24h)", f"{rate:.1%}" if rate is not None else None),
                ("last success", health["last_success_at"]),
                ("last error", health["last_error"]),
                ("pending", health["pending"]),
                ("dead letters", health["dead_letters"]),
            ]
        )
    )


@endpoint.command("disable")
@click.argument("endpoint_id")
@click.option("--reason", default="disabled by operator", show_default=True)
@tenant_option
@json_option
def endpoint_disable(endpoint_id: str, reason: str, tenant: str | None, as_json: bool) -> None:
    """Disable an endpoint; its pending deliveries move to the dead letters."""
    with connect(settings().require_database_url()) as conn:
        ep, moved = _registry(conn).disable(endpoint_id, reason, tenant_id=tenant)
    if as_json:
        emit_json({**_as_dict(ep), "dead_lettered": moved})
    else:
        click.echo(f"disabled {ep.id}; {moved} pending deliveries moved to the dead letters")


@endpoint.command("enable")
@click.argument("endpoint_id")
@tenant_option
@json_option
def endpoint_enable(endpoint_id: str, tenant: str | None, as_json: bool) -> None:
    """Enable an endpoint again (and close its circuit)."""
    with connect(settings().require_database_url()) as conn:
        ep = _registry(conn).enable(endpoint_id, tenant_id=tenant)
    if as_json:
        emit_json(ep)
    else:
        click.echo(f"enabled {ep.id}")


@endpoint.command("reset")
@click.argument("endpoint_id")
@tenant_option
@json_option
def endpoint_reset(endpoint_id: str, tenant: str | None, as_json: bool) -> None:
    """Close an endpoint's open circuit now: its waiting deliveries go at once."""
    with connect(settings().require_database_url()) as conn:
        ep, unparked = _registry(conn).reset(endpoint_id, tenant_id=tenant)
    if as_json:
        emit_json({**_as_dict(ep), "deliveries_released": unparked})
    else:
        click.echo(f"circuit of {ep.id} closed; {unparked} waiting deliveries are due now")


@endpoint.command("rotate-secret")
@click.argument("endpoint_id")
@click.option(
    "--grace", default="24h", show_default=True, help="How long the old secret stays valid."
)
@tenant_option
@json_option
def endpoint_rotate(endpoint_id: str, grace: str, tenant: str | None, as_json: bool) -> None:
    """Create a new signing secret; the old one keeps signing during the grace period."""
    seconds = duration(grace)
    with connect(settings().require_database_url()) as conn:
        registry = _registry(conn)
        secret = registry.rotate_secret(endpoint_id, grace=seconds, tenant_id=tenant)
    _secret_written(registry)
    if as_json:
        emit_json({"id": endpoint_id, "secret": secret, "grace_seconds": seconds})
    else:
        click.echo(fields([("id", endpoint_id), ("secret", secret), ("old secret valid", grace)]))


@endpoint.command("reencrypt")
@json_option
def endpoint_reencrypt(as_json: bool) -> None:
    """Seal every stored secret with the first key of WEBHOOKS_SECRET_KEY.

    The last step of rotating the key itself: prepend the new key to the list, restart the
    workers, run this, then drop the old key.
    """
    with connect(settings().require_database_url()) as conn:
        count = _registry(conn).reencrypt()
    if as_json:
        emit_json({"endpoints": count})
    else:
        click.echo(
            f"re-encrypted the secrets of {count} endpoint{'' if count == 1 else 's'}"
            " with the first key"
        )


@endpoint.command("delete")
@click.argument("endpoint_id")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking for confirmation.")
@tenant_option
@json_option
def endpoint_delete(endpoint_id: str, yes: bool, tenant: str | None, as_json: bool) -> None:
    """Delete an endpoint with its deliveries and dead letters (asks first on a terminal)."""
    with connect(settings().require_database_url()) as conn:
        registry = _registry(conn)
        if not yes:
            ep = registry.get(endpoint_id, tenant_id=tenant)
            if not sys.stdin.isatty():
                raise click.UsageError(
                    "deleting an endpoint needs confirmation: pass --yes to delete it"
                )
            going = registry.dependents(endpoint_id, tenant_id=tenant)
            click.echo(f"endpoint {ep.id} ({ep.url}) has {going.describe()}.", err=True)
            if not click.confirm("Delete it and them?", default=False, err=True):
                click.echo("not deleted", err=True)
                sys.exit(1)
        gone = registry.delete(endpoint_id, tenant_id=tenant)
    if as_json:
        emit_json({"id": endpoint_id, "deleted": True, **_as_plain(gone)})
    else:
        click.echo(f"deleted {endpoint_id} with {gone.describe()}")


# -- publish ------------------------------------------------------------------------------


@main.command()
@click.argument("event_type")
@click.option(
    "--data",
    required=True,
    help="The payload: JSON, @FILE to read it from a file, or - to read it from stdin.",
)
@click.option("--tenant", default="default", show_default=True)
@click.option("--idempotency-key", default=None, help="Publishing the same key again is a no-op.")
@json_option
def publish(
    event_type: str, data: str, tenant: str, idempotency_key: str | None, as_json: bool
) -> None:
    """Publish one event (in its own transaction).

    --data @payload.json and --data - (stdin) take payloads of any size up to
    WEBHOOKS_MAX_PAYLOAD_BYTES, which a command-line argument cannot carry (~128 KiB).
    """
    conf = settings()
    try:
        payload = json.loads(_payload_text(data, conf.max_payload_bytes))
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    with connect(conf.require_database_url()) as conn, wrapped_errors(), conn.transaction():
        event_id = publish_event(
            conn,
            event_type,
            payload,
            tenant_id=tenant,
            idempotency_key=idempotency_key,
            max_payload_bytes=conf.max_payload_bytes,
        )
    if as_json:
        emit_json({"id": event_id})
    else:
        click.echo(event_id)


#: How much larger than the payload limit a --data file may be (indentation, spaces).
_DATA_SLACK = 8


def _payload_text(data: str, max_payload_bytes: int) -> str:
    """Return the JSON text --data names: itself, a file's contents (@FILE) or stdin (-)."""
    if data != "-" and not data.startswith("@"):
        return data
    name = "stdin" if data == "-" else repr(data[1:])
    # Read a bounded amount: the payload's own size is checked by publish(), but a file far
    # beyond the limit (a wrong path to a dump) need not be read into memory first.
    cap = max_payload_bytes * _DATA_SLACK + 1
    try:
        if data == "-":
            raw = sys.stdin.buffer.read(cap)
        else:
            with open(data[1:], "rb") as fh:
                raw = fh.read(cap)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {name}: {exc.strerror or exc}", param_hint="--data"
        ) from None
    if len(raw) >= cap:
        raise click.BadParameter(
            f"{name} is far larger than WEBHOOKS_MAX_PAYLOAD_BYTES ({max_payload_bytes})",
            param_hint="--data",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{name} is not UTF-8 text", param_hint="--data") from None


# -- operators: deliveries, dead letters, status, retention, invariants --------------------


def when(text: str | None) -> datetime | None:
    """Parse --since: an ISO 8601 time, or a duration meaning that long ago (``2h``)."""
    if text is None:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a time (2026-01-31T12:00) nor a duration (2h)",
            param_hint="--since",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _queue() -> Queue:
    """Return the configured broker's queue (WEBHOOKS_BROKER_URL, else REDIS_URL)."""
    conf = settings()
    return broker_from_url(conf.broker_url, conf.queue_name)


def _attempt_rows(attempts: list[dict[str, Any]]) -> str:
    rows = [
        {
            "#": a["number"],
            "started": a["started_at"],
            "ms": round(a["duration_seconds"] * 1000),
            "status": a["status_code"],
            "error": a["error"] or "",
            "trigger": a["trigger"],
            "response": (a["response_body"] or "")[:60].replace("\n", " "),
        }
        for a in attempts
    ]
    return table(rows, ["#", "started", "ms", "status", "trigger", "error", "response"])


page_options = [
    click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000)),
    click.option("--offset", default=0, show_default=True, type=click.IntRange(0)),
]


def paged(func: F) -> F:
    """Add --limit and --offset to a listing command."""
    for option in reversed(page_options):
        func = option(func)
    return func


@main.group()
def deliveries() -> None:
    """Inspect deliveries and their attempts."""


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

    with connect(settings().require_database_url()) as conn:
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
    if as_json:
        emit_json(rows)
        return
    click.echo(
        table(
            rows,
            [
                "id",
                "event_type",
                "url",
                "status",
                "attempts",
                "last_status_code",
                "next_attempt_at",
                "created_at",
            ],
        )
    )


@deliveries.command("show")
@click.argument("delivery_id", type=int)
@tenant_option
@json_option
def deliveries_show(delivery_id: int, tenant: str | None, as_json: bool) -> None:
    """Show one delivery with every attempt."""
    from worker.ops import deliveries as store

    with connect(settings().require_database_url()) as conn:
        row = store.show(conn, delivery_id, tenant)
    if as_json:
        emit_json(row)
        return
    click.echo(
        fields(
            [
                ("delivery", row["id"]),
                ("status", row["status"]),
                ("tenant", row["tenant_id"]),
                ("event", f"{row['event_id']} ({row['event_type']})"),
                ("endpoint", f"{row['endpoint_id']} ({row['url']})"),
                ("attempts", len(row["attempts"])),
                ("next attempt", row["next_attempt_at"]),
                ("last error", row["last_error"]),
                ("created", row["created_at"]),
                ("finished", row["finished_at"]),
            ]
        )
    )
    click.echo("\n" + _attempt_rows(row["attempts"]))


@deliveries.command("retry")
@click.argument("delivery_id", type=int)
@tenant_option
@json_option
def deliveries_retry(delivery_id: int, tenant: str | None, as_json: bool) -> None:
    """Attempt a pending delivery now (one attempt, counted like any other)."""
    from worker.ops import deliveries as store

    conf = settings()
    with connect(conf.require_database_url()) as conn:
        done = store.retry(
            conn, _queue(), delivery_id, tenant_id=tenant, queue_name=conf.queue_name
        )
    if as_json:
        emit_json(done)
    else:
        click.echo(f"delivery {delivery_id} queued for an attempt now")


@deliveries.command("resend")
@click.argument("delivery_id", type=int)
@tenant_option
@json_option
def deliveries_resend(delivery_id: int, tenant: str | None, as_json: bool) -> None:
    """Send a succeeded or dead delivery again (same webhook-id, fresh retry budget)."""
    from worker.ops import deliveries as store
    from worker.ops import dlq as letters

    conf = settings()
    with connect(conf.require_database_url()) as conn:
        done = store.resend(
            conn,
            _queue(),
            delivery_id,
            tenant_id=tenant,
            queue_name=conf.queue_name,
            by=letters.operator(),
        )
    if as_json:
        emit_json(done)
    else:
        click.echo(
            f"delivery {delivery_id} ({done.previous_status}) queued to be sent again "
            f"with webhook-id {done.event_id}"
        )


@main.group()
def dlq() -> None:
    """Inspect and replay dead letters."""


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
    with connect(settings().require_database_url()) as conn:
        rows = letters.list_letters(conn, selection, limit=limit, offset=offset, history=history)
    if as_json:
        emit_json(rows)
        return
    click.echo(
        table(
            rows,
            [
                "delivery_id",
                "event_type",
                "url",
                "reason",
                "attempts",
                "last_status_code",
                "died_at",
                "replay_count",
            ],
        )
    )


@dlq.command("show")
@click.argument("delivery_id", type=int)
@tenant_option
@json_option
def dlq_show(delivery_id: int, tenant: str | None, as_json: bool) -> None:
    """Show a dead letter: its event, endpoint and every attempt."""
    from worker.ops import dlq as letters

    with connect(settings().require_database_url()) as conn:
        row = letters.show(conn, delivery_id, tenant)
    if as_json:
        emit_json(row)
        return
    click.echo(
        fields(
            [
                ("delivery", row["delivery_id"]),
                ("reason", row["reason"]),
                ("died", row["died_at"]),
                ("tenant", row["tenant_id"]),
                ("event", f"{row['event_id']} ({row['event_type']})"),
                ("event created", row["event_created_at"]),
                ("endpoint", f"{row['endpoint_id']} ({row['url']})"),
                ("endpoint enabled", row["enabled"]),
                ("attempts", len(row["attempts"])),
                ("last error", row["last_error"]),
                ("replays", row["replay_count"]),
                ("replayed at", row["replayed_at"]),
            ]
        )
    )
    click.echo("payload: " + json.dumps(row["payload"])[:2000])
    click.echo("\n" + _attempt_rows(row["attempts"]))


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
    conf = settings()
    with connect(conf.require_database_url()) as conn:
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
                None if dry_run else _queue(),
                selection,
                limit=limit,
                dry_run=dry_run,
                enable_endpoints=enable_endpoint,
                queue_name=conf.queue_name,
                progress=bar.update if bar is not None else None,
            )
    if as_json:
        emit_json(result)
    elif dry_run:
        click.echo(f"would replay {_dead_letters(result.replayed)}")
    else:
        for ep in result.enabled_endpoints:
            click.echo(f"enabled endpoint {ep}")
        click.echo(f"replayed {_dead_letters(result.replayed)}")


def _dead_letters(count: int) -> str:
    return f"{count} dead letter{'' if count == 1 else 's'}"


@main.command()
@tenant_option
@json_option
def status(tenant: str | None, as_json: bool) -> None:
    """Show outbox backlog and lag, deliveries by state, dead letters and queue depth."""
    from worker.ops import status as state

    conf = settings()
    with connect(conf.require_database_url()) as conn:
        row = state.status(conn, _queue(), conf.queue_name, tenant_id=tenant)
    if as_json:
        emit_json(row)
        return
    age = row["outbox_oldest_age_seconds"]
    click.echo(
        fields(
            [
                ("outbox backlog", row["outbox_backlog"]),
                ("oldest unrelayed", format_duration(age) if age is not None else None),
                ("deliveries pending", row["pending"]),
                ("  queued", row["queued"]),
                ("  in flight", row["in_flight"]),
                ("  due, not queued", row["due"]),
                ("  waiting to retry", row["waiting"]),
                ("  behind open circuits", row["behind_open_circuits"]),
                ("dead letters", row["dead_letters"]),
                ("endpoints", row["endpoints"]),
                ("disabled endpoints", row["disabled_endpoints"]),
                ("open circuits", row["open_circuits"]),
                (
                    "queue depth" + (" (all tenants)" if tenant is not None else ""),
                    row["queue_depth"]
                    if row["queue_depth"] is not None
                    else "unknown (broker unreachable)",
                ),
            ]
        )
    )


@main.command()
@click.option("--older-than", required=True, help="Retention period, e.g. 30d.")
@click.option("--include-dead", is_flag=True, help="Also delete dead letters not replayed.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@json_option
def prune(older_than: str, include_dead: bool, dry_run: bool, as_json: bool) -> None:
    """Delete finished events older than the retention period, in short batches."""
    from worker.ops.prune import prune as run_prune

    cutoff = datetime.now(UTC) - timedelta(seconds=duration(older_than))
    with connect(settings().require_database_url()) as conn:
        result = run_prune(conn, cutoff, include_dead=include_dead, dry_run=dry_run)
    counts = (
        f"{result.events} events, {result.deliveries} deliveries, "
        f"{result.attempts} attempts, {result.dead_letters} dead letters"
    )
    if as_json:
        emit_json(result)
    elif dry_run:
        click.echo(f"would delete {counts} older than {cutoff:%Y-%m-%d %H:%M} UTC")
    else:
        click.echo(f"deleted {counts}")


@main.command()
@click.option(
    "--grace",
    default="2m",
    show_default=True,
    help="How overdue a pending delivery may be before it counts as stuck.",
)
@json_option
def check(grace: str, as_json: bool) -> None:
    """Check the delivery invariants; exit 1 and list what is off."""
    from worker.ops import status as state

    with connect(settings().require_database_url()) as conn:
        found = state.check(conn, grace=duration(grace))
    broken = {name: rows for name, rows in found.items() if rows}
    if as_json:
        emit_json({"ok": not broken, "violations": found})
    else:
        for inv in state.INVARIANTS:
            rows = found[inv.name]
            mark = click.style("ok  ", fg="green") if not rows else click.style("FAIL", fg="red")
            click.echo(
                f"{mark} {inv.name}" + (f": {len(rows)} x {inv.description}" if rows else "")
            )
            for row in rows[:10]:
                click.echo("       " + ", ".join(f"{k}={v}" for k, v in row.items()))
    if broken:
        sys.exit(1)


@main.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where embedded data and logs go, kept afterwards (default: a temporary directory "
    "removed at the end).",
)
def dev(workdir: Path | None) -> None:
    """Run the whole pipeline with a demo receiver and sample events, until Ctrl-C.

    With no DATABASE_URL an embedded Postgres is started, with no REDIS_URL an embedded
    Redis: for development only.
    """
    from worker import dev as devmode

    settings()  # a malformed setting stops here, in one line, before anything starts
    if workdir is not None:
        devmode.run(workdir)
        click.echo(f"kept {workdir} (embedded data and pipeline.log)")
        return
    temporary = Path(tempfile.mkdtemp(prefix="webhooks-dev-"))
    try:
        devmode.run(temporary)
    finally:
        # The embedded servers are stopped by now; their data goes with the demo.
        shutil.rmtree(temporary, ignore_errors=True)


# -- the HTTP API ---------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@json_option
def api(host: str, port: int, as_json: bool) -> None:
    """Serve the management HTTP API (see /docs) until SIGTERM or Ctrl-C.

    Needs the `api` extra (FastAPI, uvicorn). /healthz and /readyz answer probes.
    """
    conf = settings()
    conf.require_database_url()
    require_schema(conf)
    try:
        from worker.api.server import serve
    except ImportError as exc:
        raise ConfigError(
            "webhooks api", f"needs the api extra: pip install 'webhooks-outbox[api]' ({exc})"
        ) from None
    logs.configure("json" if as_json else conf.log_format)
    log.info("serving the HTTP API on http://%s:%d", host, port)
    serve(conf, host, port)


# -- the HTTP API's keys -------------------------------------------------------------------


@main.group("api-key")
def api_key() -> None:
    """Make, list and revoke the keys of the HTTP API (`webhooks api`)."""


@api_key.command("create")
@click.option("--name", required=True, help="Who or what uses the key (shown in listings).")
@click.option("--tenant", default=None, help="The one tenant the key sees and touches.")
@click.option("--admin", is_flag=True, help="A key for every tenant.")
@json_option
def api_key_create(name: str, tenant: str | None, admin: bool, as_json: bool) -> None:
    """Make a key; it is printed once and stored only hashed."""
    from worker.ops import apikeys

    if admin == (tenant is not None):
        raise click.UsageError("choose exactly one of --tenant T and --admin")
    with connect(settings().require_database_url()) as conn:
        made, key = apikeys.create(conn, name, tenant_id=tenant)
    if as_json:
        emit_json({**_as_plain(made), "key": key})
        return
    click.echo(key)
    click.echo(
        f"api key {made.id} ({'admin' if made.admin else 'tenant ' + str(made.tenant_id)}):"
        " shown only now, store it safely",
        err=True,
    )


@api_key.command("list")
@json_option
def api_key_list(as_json: bool) -> None:
    """List every key (never the keys themselves), revoked ones included."""
    from worker.ops import apikeys

    with connect(settings().require_database_url()) as conn:
        keys = apikeys.list_keys(conn)
    rows = [{**_as_plain(k), "scope": k.tenant_id or "admin"} for k in keys]
    if as_json:
        emit_json(rows)
        return
    click.echo(table(rows, ["id", "name", "scope", "created_at", "last_used_at", "revoked_at"]))


@api_key.command("revoke")
@click.argument("key_id", type=int)
@json_option
def api_key_revoke(key_id: int, as_json: bool) -> None:
    """Revoke a key: every request with it is refused from now on."""
    from worker.ops import apikeys

    with connect(settings().require_database_url()) as conn:
        gone = apikeys.revoke(conn, key_id)
    if as_json:
        emit_json(gone)
    else:
        click.echo(f"revoked api key {gone.id} ({gone.name})")


# -- daemons ------------------------------------------------------------------------------


@main.command()
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--lease",
    default="30s",
    show_default=True,
    help="How long a queued delivery is left to its message before the scheduler checks on it.",
)
@json_option
def relay(batch_size: int, lease: str, as_json: bool) -> None:
    """Run the outbox relay and retry scheduler until SIGTERM or Ctrl-C.

    Serves /metrics, /healthz and /readyz on WEBHOOKS_RELAY_METRICS_PORT.
    """
    from worker.observe.health import start_relay_endpoint
    from worker.relay.daemon import Relay, RelayConfig

    conf = settings()
    require_schema(conf)
    logs.configure("json" if as_json else conf.log_format)
    daemon = Relay(
        RelayConfig(
            database_url=conf.require_database_url(),
            redis_url=conf.redis_url,
            broker_url=conf.broker_url,
            queue=conf.queue_name,
            batch_size=batch_size,
            lease=duration(lease),
            max_age=conf.max_delivery_age,
            operations_tenant=conf.operations_tenant,
        )
    )
    endpoint = start_relay_endpoint(conf, daemon.stats)
    daemon.install_signal_handlers()
    try:
        daemon.run()
    finally:
        endpoint.close()


@main.command()
@click.option(
    "--processes",
    "-p",
    default=os.cpu_count() or 1,
    type=click.IntRange(1, 256),
    show_default="CPU count",
)
@click.option("--threads", "-t", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option(
    "--concurrency",
    "-c",
    default=256,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Requests in flight per process (size it as rate x receiver latency).",
)
@json_option
def worker(processes: int, threads: int, concurrency: int, as_json: bool) -> None:
    """Run Dramatiq worker processes that deliver webhooks.

    Each process holds up to --concurrency requests in flight on one event loop, whatever
    --threads is (Dramatiq's threads only hand messages over). Serves /metrics, /healthz and
    /readyz on WEBHOOKS_METRICS_PORT from a process of its own that sums the metrics of every
    worker process.
    """
    from worker.engine import actors
    from worker.observe import health, metrics

    conf = settings()
    require_schema(conf)  # fail here, in one line, not in every child process
    health.ensure_port_free(conf.metrics_port, "WEBHOOKS_METRICS_PORT")
    env = dict(os.environ)
    # prometheus_client's multiprocess mode: each worker process writes its own files there,
    # the endpoint process sums them. Emptied first, so no earlier run's counts are added.
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics.prepare_multiproc_dir(
        env.get("PROMETHEUS_MULTIPROC_DIR")
    )
    env["WEBHOOKS_WORKER_CONCURRENCY"] = str(concurrency)
    env.setdefault("dramatiq_queue_prefetch", str(actors.queue_prefetch(threads, concurrency)))
    if as_json:
        env["WEBHOOKS_LOG_FORMAT"] = "json"
    # Idle consumers poll Redis with a backoff capped at this many ms (Dramatiq's default
    # of 1000 would add up to a second of latency at low load).
    env.setdefault("dramatiq_worker_timeout", "100")
    argv = [
        sys.executable,
        "-m",
        "worker.engine.launcher",  # Dramatiq's CLI, logging in the product's format
        "worker.engine.actors:setup",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        conf.queue_name,
        "--fork-function",
        "worker.observe.health:serve_workers",
    ]
    os.execve(sys.executable, argv, env)


# -- bench --------------------------------------------------------------------------------


@main.command()
@click.option("--events", default=20_000, show_default=True, type=click.IntRange(min=1))
@click.option("--endpoints", default=2, show_default=True, type=click.IntRange(1, 1000))
@click.option("--processes", "-p", default=2, show_default=True, type=click.IntRange(1, 256))
@click.option("--threads", "-t", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--payload-bytes", default=256, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--fail-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="Share of requests the receiver answers with 500 (retried on a short schedule).",
)
@click.option(
    "--rate",
    default=100.0,
    show_default=True,
    type=click.FloatRange(min=0.0, min_open=True),
    help="Events per second offered in the latency phase (open loop).",
)
@click.option(
    "--duration",
    "duration_text",
    default="10s",
    show_default=True,
    help="Length of the latency phase.",
)
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option(
    "--backlog",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Also time the relay draining this many events published before it starts.",
)
@click.option(
    "--single-events",
    default=2000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Events published one per transaction for the `publish` figure.",
)
@click.option(
    "--redis-db",
    default=None,
    type=click.IntRange(min=0),
    help="Redis database number for the bench's queue (default: the first empty one of 15..1).",
)
@click.option(
    "--broker-url",
    default=None,
    help="Run the relay and workers on this RabbitMQ (amqp://...; its `webhooks` queue is"
    " emptied). Default: the bench's own Redis database.",
)
@click.option(
    "--receiver-delay",
    "receiver_delay_text",
    default="0",
    show_default=True,
    help="How long the receiver waits before answering each request (e.g. 100ms).",
)
@click.option(
    "--concurrency",
    default=None,
    type=click.IntRange(1, 10_000),
    help="Passed to `webhooks worker --concurrency` (default: the worker's own).",
)
@json_option
def bench(
    events: int,
    endpoints: int,
    processes: int,
    threads: int,
    payload_bytes: int,
    fail_rate: float,
    rate: float,
    duration_text: str,
    repeats: int,
    backlog: int,
    single_events: int,
    redis_db: int | None,
    broker_url: str | None,
    receiver_delay_text: str,
    concurrency: int | None,
    as_json: bool,
) -> None:
    """Benchmark publish, relay, workers and latency on this machine; print a report.

    Creates its own database (on DATABASE_URL's server, else a local or an embedded
    Postgres) and uses its own Redis database; removes both and stops every process it
    started when it ends, also on Ctrl-C. Exit status 1 if any delivery was lost.
    """
    from worker import bench as benchmark

    conf = settings()
    opts = benchmark.Options(
        events=events,
        endpoints=endpoints,
        processes=processes,
        threads=threads,
        payload_bytes=payload_bytes,
        fail_rate=fail_rate,
        rate=rate,
        duration=duration(duration_text),
        repeats=repeats,
        backlog=backlog,
        single_events=single_events,
        database_url=conf.database_url,
        redis_url=conf.redis_url if os.environ.get("REDIS_URL") else None,
        redis_db=redis_db,
        broker_url=broker_url,
        secret_key=conf.secret_key,
        receiver_delay=duration(receiver_delay_text),
        concurrency=concurrency,
    )
    try:
        opts.check()  # values click cannot range-check (durations): a usage error, status 2
    except benchmark.BenchError as exc:
        raise click.UsageError(str(exc)) from None
    result = benchmark.run(opts, say=lambda line: click.echo(line, err=True))
    if as_json:
        emit_json(result)
    else:
        click.echo(benchmark.render(result))
    if not result["correctness"]["ok"]:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
