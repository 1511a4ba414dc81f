"""Publish through Django's database connection, inside the caller's ``atomic()`` block.

```python
from django.db import transaction
from producers.django import publish

with transaction.atomic():
    order.save()
    publish("order.paid", {"order": order.pk}, tenant_id="acme")
```

The event is written by Django's own connection for the alias ``using`` (its cursor, so
query logging, ``execute_wrapper`` hooks and Django's database errors apply) and commits or
rolls back with the block (guarantee 1). A savepoint rolled back (an inner ``atomic()``
that raised) takes its events with it. Outside ``atomic()``, on a connection in autocommit
mode, each statement would commit on its own: publish refuses with NotInTransaction unless
``allow_autocommit=True``, which publishes in a transaction of its own, committed at once.
A connection whose autocommit the application turned off is in a transaction it commits.

Works on Django 4.2 and newer, with the psycopg 3 or the psycopg2 backend (Django picks
psycopg 3 when it is installed, as it is with this package). With psycopg 3's default
client-side binding, and with psycopg2, a batch goes as one JSON document
(`producers.statements.FORMAT`); with ``OPTIONS={"server_side_binding": True}`` as binary
arrays (`producers.statements.PSYCOPG`), as the bare psycopg publisher sends it.

Adding ``"producers.django"`` to INSTALLED_APPS is needed only for the management command
``manage.py webhooks_migrate``; publishing works without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from producers.errors import ExtraNotInstalled, NotInTransaction, UnsupportedConnection
from producers.publish import Call, Event, Execute, Rows
from producers.settings import EventTypes, ValidatePayloads
from producers.statements import FORMAT, PSYCOPG, Style

try:
    from django.db import DEFAULT_DB_ALIAS, connections, transaction
except ImportError:
    raise ExtraNotInstalled("producers.django", "Django", "django") from None

__all__ = ["Event", "publish", "publish_many"]

#: Postgres's "in a failed transaction block" (psycopg 3's TransactionStatus.INERROR and
#: psycopg2's TRANSACTION_STATUS_INERROR alike).
_INERROR = 3


def publish(
    event_type: str,
    payload: Any,
    *,
    tenant_id: str = "default",
    idempotency_key: str | None = None,
    ordering_key: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
    allow_autocommit: bool = False,
    max_payload_bytes: int | None = None,
    event_types: EventTypes | None = None,
    validate: ValidatePayloads | None = None,
) -> str:
    """Append one event through the connection ``using``, in its transaction; return its id.

    The keyword arguments are `producers.publish`'s, plus ``using`` (the database alias) and
    ``allow_autocommit`` (see the module).
    """
    call = Call.of(
        [Event(event_type, payload, tenant_id, idempotency_key, ordering_key)],
        max_payload_bytes=max_payload_bytes,
        event_types=event_types,
        validate=validate,
        one=True,
    )
    return _run(call, using, allow_autocommit)[0]


def publish_many(
    events: Iterable[Event | tuple[str, Any] | Mapping[str, Any]],
    *,
    using: str = DEFAULT_DB_ALIAS,
    allow_autocommit: bool = False,
    max_payload_bytes: int | None = None,
    event_types: EventTypes | None = None,
    validate: ValidatePayloads | None = None,
) -> list[str]:
    """Append a batch of events through the connection ``using``; return their ids in order.

    Items as `producers.publish_many` takes them.
    """
    call = Call.of(
        events, max_payload_bytes=max_payload_bytes, event_types=event_types, validate=validate
    )
    return _run(call, using, allow_autocommit)


def _run(call: Call, using: str, allow_autocommit: bool) -> list[str]:
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise UnsupportedConnection(
            f"database {using!r} is {connection.vendor}; webhooks need PostgreSQL"
        )
    style = _style(connection)
    if connection.get_autocommit():
        if not allow_autocommit:
            raise NotInTransaction(
                f"database {using!r} is in autocommit mode: publish inside "
                f"`with transaction.atomic(using={using!r}):` so the event commits with your "
                "changes (or pass allow_autocommit=True to publish on its own)"
            )
        # All or nothing, committed at once: the caller asked for no transaction of theirs.
        with transaction.atomic(using=using):
            return call.run(style, _execute(connection))
    if connection.needs_rollback or _status(connection) == _INERROR:
        raise NotInTransaction(
            f"the transaction on database {using!r} has failed; leave the atomic block "
            "(or roll back) first"
        )
    return call.run(style, _execute(connection))


def _style(connection: Any) -> Style:
    """Return how this backend's cursors take parameters."""
    options = connection.settings_dict.get("OPTIONS", {})
    if connection.Database.__name__ == "psycopg" and options.get("server_side_binding") is True:
        return PSYCOPG
    # psycopg2, or psycopg 3's ClientCursor (Django's default): client-side binding.
    return FORMAT


def _status(connection: Any) -> int:
    """Return the libpq transaction status of the connection's driver connection."""
    return int(connection.connection.info.transaction_status)


def _execute(connection: Any) -> Execute:
    def execute(sql: str, params: Sequence[Any]) -> Rows:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows: Rows = cursor.fetchall()
            return rows

    return execute
