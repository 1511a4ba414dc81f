"""The `webhooks` command line: every command takes --json; errors are one line on stderr.

Exit status: 0 success, 1 runtime failure, 2 usage error or bad setting.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from producers import publish as publish_event
from worker import logs
from worker import migrate as migrations
from worker.db import connect, wrapped_errors
from worker.endpoints import Endpoint, Endpoints, parse_header
from worker.errors import ConfigError, InvalidEndpoint, PublishError, WebhooksError
from worker.output import emit_json, fields, table
from worker.settings import Settings, parse_duration
from worker.vault import Vault

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
    vault = Vault(settings().secret_key)
    if not vault.encrypts:
        log.warning("WEBHOOKS_SECRET_KEY is not set: endpoint secrets are stored unencrypted")
    return Endpoints(conn, vault)


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
        ep, secret = _registry(conn).add(
            url,
            tenant_id=tenant,
            event_types=event_types or None,
            headers=parsed,
            rate_limit=rate_limit,
            description=description,
        )
    if as_json:
        emit_json({**_as_dict(ep), "secret": secret})
    else:
        click.echo(fields([*_endpoint_fields(ep), ("secret", secret)]))


def _as_dict(ep: Endpoint) -> dict[str, Any]:
    from worker.output import plain

    out: dict[str, Any] = plain(ep)
    return out


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
            "description": ep.description,
        }
        for ep in eps
    ]
    click.echo(table(rows, ["id", "tenant", "url", "types", "enabled", "description"]))


@endpoint.command("show")
@click.argument("endpoint_id")
@tenant_option
@json_option
def endpoint_show(endpoint_id: str, tenant: str | None, as_json: bool) -> None:
    """Show one endpoint."""
    with connect(settings().require_database_url()) as conn:
        ep = _registry(conn).get(endpoint_id, tenant_id=tenant)
    if as_json:
        emit_json(ep)
    else:
        click.echo(fields(_endpoint_fields(ep)))


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
    """Enable an endpoint again."""
    with connect(settings().require_database_url()) as conn:
        ep = _registry(conn).enable(endpoint_id, tenant_id=tenant)
    if as_json:
        emit_json(ep)
    else:
        click.echo(f"enabled {ep.id}")


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
        secret = _registry(conn).rotate_secret(endpoint_id, grace=seconds, tenant_id=tenant)
    if as_json:
        emit_json({"id": endpoint_id, "secret": secret, "grace_seconds": seconds})
    else:
        click.echo(fields([("id", endpoint_id), ("secret", secret), ("old secret valid", grace)]))


@endpoint.command("delete")
@click.argument("endpoint_id")
@tenant_option
@json_option
def endpoint_delete(endpoint_id: str, tenant: str | None, as_json: bool) -> None:
    """Delete an endpoint with its deliveries and dead letters."""
    with connect(settings().require_database_url()) as conn:
        _registry(conn).delete(endpoint_id, tenant_id=tenant)
    if as_json:
        emit_json({"id": endpoint_id, "deleted": True})
    else:
        click.echo(f"deleted {endpoint_id}")


# -- publish ------------------------------------------------------------------------------


@main.command()
@click.argument("event_type")
@click.option("--data", required=True, help="The payload, as JSON.")
@click.option("--tenant", default="default", show_default=True)
@click.option("--idempotency-key", default=None, help="Publishing the same key again is a no-op.")
@json_option
def publish(
    event_type: str, data: str, tenant: str, idempotency_key: str | None, as_json: bool
) -> None:
    """Publish one event (in its own transaction)."""
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    conf = settings()
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


@main.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where embedded data and logs go (default: a new temporary directory).",
)
def dev(workdir: Path | None) -> None:
    """Run the whole pipeline with a demo receiver and sample events, until Ctrl-C.

    With no DATABASE_URL an embedded Postgres is started, with no REDIS_URL an embedded
    Redis: for development only.
    """
    from worker import dev as devmode

    devmode.run(workdir or Path(tempfile.mkdtemp(prefix="webhooks-dev-")))


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
    """Run the outbox relay and retry scheduler until SIGTERM or Ctrl-C."""
    from worker.relay import Relay, RelayConfig

    conf = settings()
    logs.configure("json" if as_json else conf.log_format)
    daemon = Relay(
        RelayConfig(
            database_url=conf.require_database_url(),
            redis_url=conf.redis_url,
            queue=conf.queue_name,
            batch_size=batch_size,
            lease=duration(lease),
        )
    )
    daemon.install_signal_handlers()
    daemon.run()


@main.command()
@click.option(
    "--processes",
    "-p",
    default=os.cpu_count() or 1,
    type=click.IntRange(1, 256),
    show_default="CPU count",
)
@click.option("--threads", "-t", default=8, show_default=True, type=click.IntRange(1, 256))
@json_option
def worker(processes: int, threads: int, as_json: bool) -> None:
    """Run Dramatiq worker processes that deliver webhooks."""
    conf = settings()
    conf.require_database_url()  # fail here, in one line, not in every child process
    env = dict(os.environ)
    env["WEBHOOKS_WORKER_THREADS"] = str(threads)
    if as_json:
        env["WEBHOOKS_LOG_FORMAT"] = "json"
    # Idle consumers poll Redis with a backoff capped at this many ms (Dramatiq's default
    # of 1000 would add up to a second of latency at low load).
    env.setdefault("dramatiq_worker_timeout", "100")
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "worker.actors:setup",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        conf.queue_name,
    ]
    os.execve(sys.executable, argv, env)


if __name__ == "__main__":  # pragma: no cover
    main()
