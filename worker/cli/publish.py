"""`webhooks publish`: publish one event from the command line, in its own transaction."""

from __future__ import annotations

import json
import sys

import click

from producers import publish as publish_event
from worker.cli.common import app, connection, emit, json_option
from worker.ops import events
from worker.store.db import wrapped_errors

#: How much larger than the payload limit a --data file may be (indentation, spaces).
_DATA_SLACK = 8


@click.command()
@click.argument("event_type")
@click.option(
    "--data",
    required=True,
    help="The payload: JSON, @FILE to read it from a file, or - to read it from stdin.",
)
@click.option("--tenant", default="default", show_default=True)
@click.option("--idempotency-key", default=None, help="Publishing the same key again is a no-op.")
@click.option(
    "--ordering-key",
    default=None,
    help="Ordered endpoints receive the events of one key one after another.",
)
@json_option
def publish(
    event_type: str,
    data: str,
    tenant: str,
    idempotency_key: str | None,
    ordering_key: str | None,
    as_json: bool,
) -> None:
    """Publish one event (in its own transaction).

    --data @payload.json and --data - (stdin) take payloads of any size up to
    WEBHOOKS_MAX_PAYLOAD_BYTES, which a command-line argument cannot carry (~128 KiB).
    """
    settings = app().settings
    limit = settings.max_payload_bytes
    try:
        payload = json.loads(json_text(data, limit))
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    with connection() as conn, wrapped_errors(), conn.transaction():
        event_id = publish_event(
            conn,
            event_type,
            payload,
            tenant_id=tenant,
            idempotency_key=idempotency_key,
            ordering_key=ordering_key,
            max_payload_bytes=limit,
            event_types=settings.event_types,
            validate=settings.validate_payloads,
        )
        repeated = events.published_before(conn, event_id)
    human = f"already published as {event_id} (same idempotency key)" if repeated else event_id
    emit(as_json, {"id": event_id, "repeated": repeated}, human)


def json_text(data: str, max_payload_bytes: int, option: str = "--data") -> str:
    """Return the JSON text an option names: itself, a file's contents (@FILE) or stdin (-)."""
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
            f"cannot read {name}: {exc.strerror or exc}", param_hint=option
        ) from None
    if len(raw) >= cap:
        raise click.BadParameter(
            f"{name} is far larger than WEBHOOKS_MAX_PAYLOAD_BYTES ({max_payload_bytes})",
            param_hint=option,
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{name} is not UTF-8 text", param_hint=option) from None
