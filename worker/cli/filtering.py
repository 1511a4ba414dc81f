"""`webhooks endpoint ... --filter` and `webhooks endpoint test-filter`: payload filters."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import click

from worker.cli.common import app, emit, json_option, registry, tenant_option
from worker.cli.output import fields
from worker.cli.publish import json_text
from worker.ops.filtering import verdict
from worker.policy import filters

FILTER_HELP = "Deliver only events that pass this filter: JSON, or @FILE (see the README)."


def filter_value(text: str) -> dict[str, Any]:
    """Return the filter --filter names (JSON text or @FILE), parsed and checked.

    A filter that does not parse is refused with the path of what is wrong (exit 2).
    """
    source = json_text(text, filters.MAX_BYTES * 4, "--filter")
    return filters.parse_text(source).source


@click.command("test-filter")
@click.argument("endpoint_id")
@click.option(
    "--data",
    required=True,
    help="The payload to try: JSON, @FILE to read it from a file, or - to read it from stdin.",
)
@click.option(
    "--event-type",
    default=None,
    help="The event's type [default: the endpoint's first plain event type, else webhooks.test].",
)
@tenant_option
@json_option
def test_filter(
    endpoint_id: str, data: str, event_type: str | None, tenant: str | None, as_json: bool
) -> None:
    """Say whether an event with this payload would be delivered to the endpoint, and why not.

    Nothing is published or sent: the endpoint's event types and filter are checked as the
    relay checks them.
    """
    try:
        # Decimals: numbers compare as the decimals they are written as, as in Postgres.
        payload = json.loads(json_text(data, app().settings.max_payload_bytes), parse_float=Decimal)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    with registry() as endpoints:
        ep = endpoints.get(endpoint_id, tenant_id=tenant)
    found = verdict(ep, payload, event_type)
    emit(
        as_json,
        found,
        lambda: fields(
            [
                ("endpoint", found.endpoint_id),
                ("event type", found.event_type),
                ("delivered", "yes" if found.delivered else "no"),
                ("reason", found.reason),
            ]
        ),
    )
