"""Publish through a SQLAlchemy 2 Session or Connection, in its own transaction.

```python
from producers.sqlalchemy import publish

with Session(engine) as session, session.begin():
    session.add(invoice)
    publish(session, "invoice.paid", {"invoice": invoice.id}, tenant_id="acme")
```

The event is written with the session's (or connection's) own connection, in the transaction
SQLAlchemy began for it, never on a second connection: it commits or rolls back with it
(guarantee 1), savepoints (``begin_nested``) included. The statements run through
``Connection.exec_driver_sql``, so SQLAlchemy's logging and cursor events see them.

Drivers: psycopg (``postgresql+psycopg``, sync and async: binary arrays as the bare
publisher sends them), psycopg2 (one JSON document a batch) and asyncpg (numbered
parameters, arrays in binary). `apublish` and `apublish_many` take an AsyncSession or
AsyncConnection and run the same statements inside ``run_sync``.

A Session or Connection is always in a transaction when it runs a statement: SQLAlchemy 2
begins one and the caller commits it. An engine or connection with
``isolation_level="AUTOCOMMIT"`` would commit each statement on its own, so it is refused
with NotInTransaction, as is a session whose transaction failed and awaits its rollback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from producers.errors import ExtraNotInstalled, NotInTransaction, UnsupportedConnection
from producers.publish import Call, Event, Execute, Rows
from producers.settings import EventTypes, ValidatePayloads
from producers.statements import ASYNCPG, FORMAT, PSYCOPG, Style

try:
    from sqlalchemy import exc
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session
except ImportError:
    raise ExtraNotInstalled("producers.sqlalchemy", "SQLAlchemy", "sqlalchemy") from None

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

__all__ = ["Event", "apublish", "apublish_many", "publish", "publish_many"]

#: The style each supported driver takes (SQLAlchemy's ``dialect.driver``).
STYLES: dict[str, Style] = {
    "psycopg": PSYCOPG,
    "psycopg_async": PSYCOPG,
    "psycopg2": FORMAT,
    "asyncpg": ASYNCPG,
}

#: Postgres's "in a failed transaction block" (psycopg 3's and psycopg2's status alike).
_INERROR = 3
Events = Iterable[Event | tuple[str, Any] | Mapping[str, Any]]


def publish(
    target: Session | Connection,
    event_type: str,
    payload: Any,
    *,
    tenant_id: str = "default",
    idempotency_key: str | None = None,
    ordering_key: str | None = None,
    max_payload_bytes: int | None = None,
    event_types: EventTypes | None = None,
    validate: ValidatePayloads | None = None,
) -> str:
    """Append one event in the Session's or Connection's transaction; return its id.

    The keyword arguments are `producers.publish`'s.
    """
    call = _one(
        event_type,
        payload,
        tenant_id,
        idempotency_key,
        ordering_key,
        max_payload_bytes,
        event_types,
        validate,
    )
    return _run(call, target)[0]


def publish_many(
    target: Session | Connection,
    events: Events,
    *,
    max_payload_bytes: int | None = None,
    event_types: EventTypes | None = None,
    validate: ValidatePayloads | None = None,
) -> list[str]:
    """Append a batch of events in the Session's or Connection's transaction; return the ids.

    Items as `producers.publish_many` takes them.
    """
    call = Call.of(
        events, max_payload_bytes=max_payload_bytes, event_types=event_types, validate=validate
    )
    return _run(call, target)


async def apublish(
    target: AsyncSession | AsyncConnection,
    event_type: str,
    payload: Any,
    *,
    tenant_id: str = "default",
    idempotency_key: str | None = None,
    ordering_key: str | None = None,
    max_payload_bytes: int | None = None,
    event_types: EventTypes | None = None,
    validate: ValidatePayloads | None = None,
) -> str:
    """`publish` on an AsyncSession or AsyncConnection."""
    call = _one(
        event_type,
        payload,
        tenant_id,
        idempotency_key,
        ordering_key,
        max_payload_bytes,
        event_types,
        validate,
    )
    return (await _arun(call, target))[0]


async def apublish_many(
    target: AsyncSession | AsyncConnection,
    events: Events,
    *,
    max_payload_bytes: int | None = None,
    event_types: EventTypes | None = None,
    validate: ValidatePayloads | None = None,
) -> list[str]:
    """`publish_many` on an AsyncSession or AsyncConnection."""
    call = Call.of(
        events, max_payload_bytes=max_payload_bytes, event_types=event_types, validate=validate
    )
    return await _arun(call, target)


def _one(
    event_type: str,
    payload: Any,
    tenant_id: str,
    idempotency_key: str | None,
    ordering_key: str | None,
    max_payload_bytes: int | None,
    event_types: EventTypes | None,
    validate: ValidatePayloads | None,
) -> Call:
    return Call.of(
        [Event(event_type, payload, tenant_id, idempotency_key, ordering_key)],
        max_payload_bytes=max_payload_bytes,
        event_types=event_types,
        validate=validate,
        one=True,
    )


def _run(call: Call, target: object) -> list[str]:
    conn = _connection(target)
    return call.run(_style(conn), _execute(conn))


async def _arun(call: Call, target: object) -> list[str]:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if isinstance(target, AsyncSession | AsyncConnection):
        # Inside run_sync the sync API drives the async driver on this task.
        ids: list[str] = await target.run_sync(lambda sync: _run(call, sync))
        return ids
    raise UnsupportedConnection(
        f"expected a SQLAlchemy AsyncSession or AsyncConnection, got {type(target).__name__}"
    )


def _connection(target: object) -> Connection:
    """Return the connection of ``target`` in its transaction, if it may publish now."""
    if isinstance(target, Session):
        try:
            conn = target.connection()  # begins the session's transaction if none is
        except exc.PendingRollbackError as error:
            raise NotInTransaction(
                "the session's transaction has failed; roll it back first"
            ) from error
    elif isinstance(target, Connection):
        conn = target
    elif type(target).__name__ in ("AsyncSession", "AsyncConnection"):
        raise UnsupportedConnection("an async session or connection needs `await apublish(...)`")
    else:
        raise UnsupportedConnection(
            f"expected a SQLAlchemy Session or Connection, got {type(target).__name__}"
        )
    if conn.dialect.name != "postgresql":
        raise UnsupportedConnection(f"the connection is to {conn.dialect.name}, not PostgreSQL")
    if conn.invalidated:
        raise NotInTransaction("the connection was invalidated; roll it back first")
    info = getattr(conn.connection.driver_connection, "info", None)  # psycopg, psycopg2
    if info is not None and int(info.transaction_status) == _INERROR:
        raise NotInTransaction("the transaction has failed; roll it back first")
    if getattr(conn.connection.dbapi_connection, "autocommit", False):
        raise NotInTransaction(
            'the connection uses isolation_level="AUTOCOMMIT", which commits each statement '
            "on its own: publish on a connection that runs transactions"
        )
    return conn


def _style(conn: Connection) -> Style:
    driver = conn.dialect.driver
    if driver not in STYLES:
        raise UnsupportedConnection(
            f"SQLAlchemy driver {driver!r} is not supported; use psycopg, psycopg2 or asyncpg"
        )
    return STYLES[driver]


def _execute(conn: Connection) -> Execute:
    def execute(sql: str, params: Sequence[Any]) -> Rows:
        return conn.exec_driver_sql(sql, tuple(params)).all()

    return execute
