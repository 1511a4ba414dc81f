"""`webhooks endpoint`: register and manage the endpoints events are delivered to."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from worker.cli.common import (
    DURATION,
    app,
    as_dict,
    emit,
    json_option,
    registry,
    tenant_option,
    warn,
)
from worker.cli.filtering import FILTER_HELP, filter_value, test_filter
from worker.cli.output import fields, table
from worker.ops.endpoints import Endpoint, Endpoints, parse_header
from worker.settings import format_duration

ORDERED_HELP = (
    "Deliver the events of one ordering key one after another, in publish order"
    " (publish --ordering-key)."
)


@click.group()
def endpoint() -> None:
    """Register and manage the endpoints events are delivered to."""


def _secret_written(endpoints: Endpoints, what: str = "the secret is") -> None:
    """Say, once a secret or header value is written, that it was stored plain (no key)."""
    if not endpoints.vault.encrypts:
        warn(f"WEBHOOKS_SECRET_KEY is not set: {what} stored unencrypted")


def _endpoint_fields(ep: Endpoint) -> list[tuple[str, Any]]:
    return [
        ("id", ep.id),
        ("tenant", ep.tenant_id),
        ("url", ep.url),
        ("description", ep.description or None),
        ("event types", list(ep.event_types) if ep.event_types else "all"),
        ("filter", json.dumps(ep.filter, ensure_ascii=False) if ep.filter is not None else None),
        # Redacted values, except in the answer of add and update (`Endpoint.headers`).
        ("headers", ", ".join(f"{k}: {v}" for k, v in ep.headers.items()) or None),
        ("rate limit", f"{ep.rate_limit}/s" if ep.rate_limit else None),
        ("ordered", "per ordering key" if ep.ordered else None),
        ("enabled", ep.enabled),
        ("disabled reason", ep.disabled_reason),
        ("disabled at", ep.disabled_at),
        ("failing since", ep.failing_since),
        ("consecutive failures", ep.consecutive_failures),
        ("circuit", ep.circuit),
        ("secrets", ep.secrets),
        ("created", ep.created_at),
    ]


@endpoint.command("add")
@click.argument("url")
@click.option("--tenant", default="default", show_default=True, help="Tenant owning the endpoint.")
@click.option("--event-type", "event_types", multiple=True, help="Deliver only this type (repeat).")
@click.option("--header", "headers", multiple=True, help="Extra header 'Name: value' (repeat).")
@click.option("--rate-limit", type=click.IntRange(min=1), help="Requests per second at most.")
@click.option("--description", default="", help="Free text shown in listings.")
@click.option("--filter", "filter_text", default=None, help=FILTER_HELP)
@click.option("--ordered", is_flag=True, help=ORDERED_HELP)
@json_option
def endpoint_add(
    url: str,
    tenant: str,
    event_types: tuple[str, ...],
    headers: tuple[str, ...],
    rate_limit: int | None,
    description: str,
    filter_text: str | None,
    ordered: bool,
    as_json: bool,
) -> None:
    """Create an endpoint and print its id and signing secret.

    --event-type takes patterns too: order.* (one segment), * (every type).
    """
    parsed = dict(parse_header(h) for h in headers)
    flt = filter_value(filter_text) if filter_text is not None else None
    with registry(url) as endpoints:
        ep, secret = endpoints.add(
            url,
            tenant_id=tenant,
            event_types=event_types or None,
            headers=parsed,
            rate_limit=rate_limit,
            description=description,
            filter=flt,
            ordered=ordered,
        )
    _secret_written(
        endpoints, "the secret and the header values are" if parsed else "the secret is"
    )
    emit(
        as_json,
        {**as_dict(ep), "secret": secret},
        lambda: fields([*_endpoint_fields(ep), ("secret", secret)]),
    )


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
@click.option("--filter", "filter_text", default=None, help=FILTER_HELP)
@click.option("--no-filter", is_flag=True, help="Remove the payload filter.")
@click.option(
    "--ordered/--unordered",
    default=None,
    help=ORDERED_HELP + " --unordered: in parallel (from the next event on).",
)
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
    filter_text: str | None,
    no_filter: bool,
    ordered: bool | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """Change only what is given; print the endpoint as it is now.

    --event-type and --header replace the filter and the custom headers with those given;
    --all-event-types, --clear-headers and --no-rate-limit remove them. --filter replaces
    the payload filter, --no-filter removes it.
    """
    for given, clear, names in (
        (event_types, all_event_types, "--event-type and --all-event-types"),
        (headers, clear_headers, "--header and --clear-headers"),
        (rate_limit is not None, no_rate_limit, "--rate-limit and --no-rate-limit"),
        (filter_text is not None, no_filter, "--filter and --no-filter"),
    ):
        if given and clear:
            raise click.UsageError(f"{names} cannot be combined")
    changes: dict[str, Any] = {"url": url, "description": description, "ordered": ordered}
    if event_types or all_event_types:
        changes["event_types"] = event_types or None
    if headers or clear_headers:
        changes["headers"] = dict(parse_header(h) for h in headers)
    if rate_limit is not None or no_rate_limit:
        changes["rate_limit"] = rate_limit
    if filter_text is not None or no_filter:
        changes["filter"] = filter_value(filter_text) if filter_text is not None else None
    if all(v is None for v in (url, description, ordered)) and len(changes) == 3:
        raise click.UsageError(
            "nothing to update: give --url, --event-type, --all-event-types, --header, "
            "--clear-headers, --rate-limit, --no-rate-limit, --description, --filter,"
            " --no-filter, --ordered or --unordered"
        )
    with registry(url) as endpoints:
        ep = endpoints.update(endpoint_id, tenant_id=tenant, **changes)
    if headers:
        _secret_written(endpoints, "the header values are")
    emit(as_json, ep, lambda: fields(_endpoint_fields(ep)))


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
    attempt = app().send_test_event(endpoint_id, event_type=event_type, tenant_id=tenant)
    emit(
        as_json,
        attempt,
        lambda: fields(
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
        ),
    )
    excerpt = (attempt.response_body or "")[:500]
    if excerpt and not as_json:
        click.echo("response: " + excerpt.replace("\n", " "))
    if not attempt.ok:
        sys.exit(1)


@endpoint.command("list")
@tenant_option
@json_option
def endpoint_list(tenant: str | None, as_json: bool) -> None:
    """List endpoints."""
    with registry() as endpoints:
        eps = endpoints.list(tenant_id=tenant)
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
    columns = ["id", "tenant", "url", "types", "enabled", "circuit", "failures", "description"]
    emit(as_json, eps, lambda: table(rows, columns))


@endpoint.command("show")
@click.argument("endpoint_id")
@tenant_option
@json_option
def endpoint_show(endpoint_id: str, tenant: str | None, as_json: bool) -> None:
    """Show one endpoint."""
    with registry() as endpoints:
        ep = endpoints.get(endpoint_id, tenant_id=tenant)
        health = endpoints.health(endpoint_id, tenant_id=tenant)
    rate = health.success_rate_24h
    emit(
        as_json,
        {**as_dict(ep), "health": health},
        lambda: fields(
            [
                *_endpoint_fields(ep),
                ("attempts (24h)", health.attempts_24h),
                ("success rate (24h)", f"{rate:.1%}" if rate is not None else None),
                ("last success", health.last_success_at),
                ("last error", health.last_error),
                ("pending", health.pending),
                ("dead letters", health.dead_letters),
            ]
        ),
    )


@endpoint.command("disable")
@click.argument("endpoint_id")
@click.option("--reason", default="disabled by operator", show_default=True)
@tenant_option
@json_option
def endpoint_disable(endpoint_id: str, reason: str, tenant: str | None, as_json: bool) -> None:
    """Disable an endpoint; its pending deliveries move to the dead letters."""
    with registry() as endpoints:
        ep, moved = endpoints.disable(endpoint_id, reason, tenant_id=tenant)
    emit(
        as_json,
        {**as_dict(ep), "dead_lettered": moved},
        f"disabled {ep.id}; {moved} pending deliveries moved to the dead letters",
    )


@endpoint.command("enable")
@click.argument("endpoint_id")
@tenant_option
@json_option
def endpoint_enable(endpoint_id: str, tenant: str | None, as_json: bool) -> None:
    """Enable an endpoint again (and close its circuit)."""
    with registry() as endpoints:
        ep = endpoints.enable(endpoint_id, tenant_id=tenant)
    emit(as_json, ep, f"enabled {ep.id}")


@endpoint.command("reset")
@click.argument("endpoint_id")
@tenant_option
@json_option
def endpoint_reset(endpoint_id: str, tenant: str | None, as_json: bool) -> None:
    """Close an endpoint's open circuit now: its waiting deliveries go at once."""
    with registry() as endpoints:
        ep, unparked = endpoints.reset(endpoint_id, tenant_id=tenant)
    emit(
        as_json,
        {**as_dict(ep), "deliveries_released": unparked},
        f"circuit of {ep.id} closed; {unparked} waiting deliveries are due now",
    )


@endpoint.command("rotate-secret")
@click.argument("endpoint_id")
@click.option(
    "--grace",
    type=DURATION,
    default="24h",
    show_default=True,
    help="How long the old secret stays valid.",
)
@tenant_option
@json_option
def endpoint_rotate(endpoint_id: str, grace: float, tenant: str | None, as_json: bool) -> None:
    """Create a new signing secret; the old one keeps signing during the grace period."""
    seconds = grace
    with registry() as endpoints:
        secret = endpoints.rotate_secret(endpoint_id, grace=seconds, tenant_id=tenant)
    _secret_written(endpoints)
    emit(
        as_json,
        {"id": endpoint_id, "secret": secret, "grace_seconds": seconds},
        lambda: fields(
            [("id", endpoint_id), ("secret", secret), ("old secret valid", format_duration(grace))]
        ),
    )


@endpoint.command("reencrypt")
@json_option
def endpoint_reencrypt(as_json: bool) -> None:
    """Seal every stored secret and header value with the first key of WEBHOOKS_SECRET_KEY.

    The last step of rotating the key itself: prepend the new key to the list, restart the
    workers, run this, then drop the old key.
    """
    with registry() as endpoints:
        count = endpoints.reencrypt()
    emit(
        as_json,
        {"endpoints": count},
        f"re-encrypted the secrets and header values of {count}"
        f" endpoint{'' if count == 1 else 's'} with the first key",
    )


@endpoint.command("delete")
@click.argument("endpoint_id")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking for confirmation.")
@tenant_option
@json_option
def endpoint_delete(endpoint_id: str, yes: bool, tenant: str | None, as_json: bool) -> None:
    """Delete an endpoint with its deliveries and dead letters (asks first on a terminal)."""
    with registry() as endpoints:
        if not yes:
            _confirm_delete(endpoints, endpoint_id, tenant)
        gone = endpoints.delete(endpoint_id, tenant_id=tenant)
    emit(
        as_json,
        {"id": endpoint_id, "deleted": True, **as_dict(gone)},
        f"deleted {endpoint_id} with {gone.describe()}",
    )


def _confirm_delete(endpoints: Endpoints, endpoint_id: str, tenant: str | None) -> None:
    """Ask on a terminal before deleting; without one, refuse unless --yes was given."""
    ep = endpoints.get(endpoint_id, tenant_id=tenant)
    if not sys.stdin.isatty():
        raise click.UsageError("deleting an endpoint needs confirmation: pass --yes to delete it")
    going = endpoints.dependents(endpoint_id, tenant_id=tenant)
    click.echo(f"endpoint {ep.id} ({ep.url}) has {going.describe()}.", err=True)
    if not click.confirm("Delete it and them?", default=False, err=True):
        click.echo("not deleted", err=True)
        sys.exit(1)


endpoint.add_command(test_filter)
