"""Append events to webhooks.outbox inside the caller's transaction.

Atomicity rule: ``publish`` writes with the caller's connection and never commits, so the
event exists if and only if the caller's transaction commits (guarantee 1). A connection in
autocommit mode is accepted only inside a ``conn.transaction()`` block; outside one each
statement would commit on its own, so it is refused with NotInTransaction. A connection
not in autocommit mode is always inside a transaction (psycopg opens one implicitly) that the
caller commits or rolls back.

Payload limit: the ``max_payload_bytes`` argument, else WEBHOOKS_MAX_PAYLOAD_BYTES. Catalogue
checks (`producers.catalogue`): the ``event_types`` and ``validate`` arguments, else
WEBHOOKS_EVENT_TYPES and WEBHOOKS_VALIDATE_PAYLOADS. `producers.settings` reads the three, the
only module of this library that reads the environment. Every check runs before the insert.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import (
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from producers import catalogue, statements, tracing
from producers.errors import (
    InvalidEvent,
    InvalidPayload,
    NotInTransaction,
    PayloadTooLarge,
    UnsupportedConnection,
)
from producers.ids import uuid7
from producers.names import check_event_type, check_tenant
from producers.settings import (
    EventTypes,
    ValidatePayloads,
    check_event_types,
    check_validate_payloads,
    event_types_from_env,
    max_payload_bytes_from_env,
    refused_as_invalid,
    validate_payloads_from_env,
)
from producers.statements import FORMAT, PSYCOPG, Style, document, render

MAX_IDEMPOTENCY_KEY = 255
#: The longest ordering key (`Event.ordering_key`).
MAX_ORDERING_KEY = 255
CHANNEL = statements.CHANNEL
#: Payload bytes per batch statement at most: a larger batch is split (one jsonb value, the
#: document form's, holds at most 256 MiB).
BATCH_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Event:
    """One event for `publish_many`.

    ``ordering_key``: on an endpoint marked ordered, events with the same key are delivered
    one after another in publish order (README, "Ordered delivery"); elsewhere it is kept
    and ignored.
    """

    event_type: str
    payload: Any
    tenant_id: str = "default"
    idempotency_key: str | None = None
    ordering_key: str | None = None


def _max_payload_bytes(explicit: int | None) -> int:
    """Return the payload limit: the argument, else the environment's."""
    return explicit if explicit is not None else max_payload_bytes_from_env()


def _checks(
    event_types: EventTypes | None, validate: ValidatePayloads | None
) -> tuple[EventTypes, ValidatePayloads]:
    """Return the catalogue checks to make: the arguments, else the environment's."""
    return (
        event_types_from_env()
        if event_types is None
        else refused_as_invalid("event_types", event_types, check_event_types),
        validate_payloads_from_env()
        if validate is None
        else refused_as_invalid("validate", validate, check_validate_payloads),
    )


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


#: A prepared event: (tenant, type, payload JSON, idempotency key, ordering key).
Prepared = tuple[str, str, str, str | None, str | None]


def _check_key(name: str, key: object, longest: int) -> str | None:
    """Return ``key`` if it is None or storable text of 1 to ``longest`` characters."""
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > longest:
        raise InvalidEvent(f"{name} must be a non-empty string of at most {longest} characters")
    if "\x00" in key:
        raise InvalidEvent(f"{name} contains a NUL character")
    if not key.isascii() and not _is_utf8(key):
        raise InvalidEvent(f"{name} is not valid text (it has a lone surrogate)")
    return key


def prepare(event: Event, max_payload_bytes: int) -> Prepared:
    """Validate one event; return it prepared (`Prepared`) or raise PublishError."""
    event_type = check_event_type(event.event_type)
    tenant = check_tenant(event.tenant_id)
    key = _check_key("idempotency key", event.idempotency_key, MAX_IDEMPOTENCY_KEY)
    ordering = _check_key("ordering key", event.ordering_key, MAX_ORDERING_KEY)
    try:
        body = json.dumps(event.payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        # Encoding refuses lone surrogates (what invalid UTF-8 on a command line decodes
        # to), which json.dumps lets through and Postgres cannot store.
        size = len(body.encode())
    except (TypeError, ValueError, RecursionError) as exc:
        # ValueError includes circular references and UnicodeEncodeError; RecursionError is a
        # payload nested deeper than the encoder goes.
        raise InvalidPayload(f"payload is not JSON-serialisable: {exc}") from exc
    if "\\u0000" in body and _ESCAPED_NUL.search(body):
        # jsonb cannot store the NUL character.
        raise InvalidPayload("payload contains a NUL character (\\u0000), which jsonb cannot store")
    if size > max_payload_bytes:
        raise PayloadTooLarge(size, max_payload_bytes)
    return tenant, event_type, body, key, ordering


#: A NUL character as json.dumps writes it: ``\u0000`` after an even number of backslashes
#: (an odd number is an escaped backslash followed by the text "u0000").
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


#: A statement to run and its parameters.
Statement = tuple[str, Sequence[Any]]
#: The rows a statement returned, each a sequence of column values.
Rows = Sequence[Sequence[Any]]
#: Run a statement on the caller's connection and return its rows.
Execute = Callable[[str, Sequence[Any]], Rows]
AsyncExecute = Callable[[str, Sequence[Any]], Awaitable[Rows]]


@dataclass(frozen=True)
class Call:
    """One publish call, validated and ready to run on any driver.

    Every publisher builds one (`Call.of`) before it touches the connection, so bad input is
    refused before anything is sent, then runs its `steps` on the caller's connection with
    `run` or `arun`. The steps yield statements and take back their rows (sans-IO, as
    psycopg's own generators do): the catalogue lookup when a check needs it, then the
    insert.
    """

    prepared: list[Prepared]
    event_types: EventTypes
    validate: ValidatePayloads
    #: One event, `publish`: returned id in a single-row statement (INSERT_ONE).
    one: bool = False
    #: The caller's trace context, stored with every event of the call (`producers.tracing`).
    trace: str | None = None

    @classmethod
    def of(
        cls,
        events: Iterable[Event | tuple[str, Any] | Mapping[str, Any]],
        *,
        max_payload_bytes: int | None = None,
        event_types: EventTypes | None = None,
        validate: ValidatePayloads | None = None,
        one: bool = False,
    ) -> Call:
        """Validate ``events``; raise PublishError at the first bad one (nothing is sent)."""
        limit, checks = _max_payload_bytes(max_payload_bytes), _checks(event_types, validate)
        prepared = [prepare(_as_event(item), limit) for item in events]
        return cls(prepared, *checks, one=one, trace=tracing.current())

    def steps(self, style: Style) -> Generator[Statement, Rows, list[str]]:
        """Yield each statement to run in ``style``, take its rows; return the event ids."""
        if not self.prepared:
            return []
        items = [(p[1], p[2]) for p in self.prepared]
        if catalogue.needed(self.event_types, self.validate):
            lookup = catalogue.Lookup((name for name, _ in items), self.validate != "off")
            rows = yield render(catalogue.LOOKUP, style), lookup.params()
            catalogue.enforce(lookup.entries(rows), items, self.event_types, self.validate)
        if self.one:
            tenant, etype, body, key, ordering = self.prepared[0]
            event_id = uuid7()
            values = (_id(event_id, style), tenant, etype, body, key, ordering, self.trace)
            rows = yield render(statements.INSERT_ONE, style), values
            return [str(rows[0][0])]
        return (yield from self._many(style))

    def _many(self, style: Style) -> Generator[Statement, Rows, list[str]]:
        ids: list[str] = []
        first_by_key: dict[tuple[str, str], str] = {}
        batch: list[tuple[Any, ...]] = []
        for tenant, etype, body, key, ordering in self.prepared:
            if key is not None and (tenant, key) in first_by_key:
                # A key repeated inside the batch names the same event: one row, one id.
                ids.append(first_by_key[(tenant, key)])
                continue
            new_id = uuid7()
            ids.append(str(new_id))
            if key is not None:
                first_by_key[(tenant, key)] = str(new_id)
            batch.append((_id(new_id, style), tenant, etype, body, key, ordering, self.trace))
        returned: list[Sequence[Any]] = []
        for chunk in _chunks(batch):
            statement: Statement
            if style.document:
                statement = render(statements.INSERT_DOCUMENT, style), (document(chunk),)
            else:
                columns = tuple(list(column) for column in zip(*chunk, strict=True))
                statement = render(statements.INSERT_MANY, style), columns
            returned.extend((yield statement))
        if first_by_key:
            # Keys already present in the outbox keep the first event's id.
            actual = {(row[1], row[2]): str(row[0]) for row in returned if row[2] is not None}
            remap = {
                mine: actual[tk]
                for tk, mine in first_by_key.items()
                if actual.get(tk, mine) != mine
            }
            if remap:
                ids = [remap.get(i, i) for i in ids]
        return ids

    def run(self, style: Style, execute: Execute) -> list[str]:
        """Run the steps with ``execute``; return the event ids in input order."""
        steps = self.steps(style)
        try:
            statement = next(steps)
            while True:
                statement = steps.send(execute(*statement))
        except StopIteration as done:
            ids: list[str] = done.value
            return ids

    async def arun(self, style: Style, execute: AsyncExecute) -> list[str]:
        """`run` with an async ``execute``."""
        steps = self.steps(style)
        try:
            statement = next(steps)
            while True:
                statement = steps.send(await execute(*statement))
        except StopIteration as done:
            ids: list[str] = done.value
            return ids


def _id(event_id: uuid.UUID, style: Style) -> uuid.UUID | str:
    # psycopg2 adapts no UUID unless the application registered the adapter.
    return str(event_id) if style is FORMAT else event_id


def _chunks(rows: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    """Split rows so that no statement carries over BATCH_BYTES of payload."""
    chunk: list[tuple[Any, ...]] = []
    size = 0
    for row in rows:
        if chunk and size + len(row[3]) > BATCH_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += len(row[3])
    if chunk:
        yield chunk


def _psycopg_owner(conn: object) -> psycopg.Connection[Any]:
    """Return the psycopg 3 connection behind ``conn``, if it may publish now."""
    if isinstance(conn, psycopg.Cursor):
        owner: object = conn.connection
    elif isinstance(conn, psycopg.Connection):
        owner = conn
    elif isinstance(conn, psycopg.AsyncConnection | psycopg.AsyncCursor):
        raise UnsupportedConnection("an async connection needs `await apublish(...)`")
    else:
        raise UnsupportedConnection(
            f"expected a psycopg 3 Connection or Cursor, got {type(conn).__name__}"
        )
    assert isinstance(owner, psycopg.Connection)
    check_transaction(owner.autocommit, owner.info.transaction_status)
    return owner


def check_transaction(autocommit: bool, state: TransactionStatus) -> None:
    """Refuse a failed transaction, or an autocommit connection outside a transaction."""
    if state == TransactionStatus.INERROR:
        raise NotInTransaction("the transaction has failed; roll it back first")
    if autocommit and state != TransactionStatus.INTRANS:
        raise NotInTransaction(
            "autocommit connection outside a transaction: publish inside "
            "`with conn.transaction():` so the event commits with your changes"
        )


def psycopg_execute(owner: psycopg.Connection[Any]) -> Execute:
    """Return an `Execute` on a cursor of ``owner``'s own, whatever cursor class and row
    factory the caller's connection makes (a ClientCursor could not take ``%b``)."""

    def execute(sql: str, params: Sequence[Any]) -> Rows:
        with psycopg.Cursor(owner, row_factory=tuple_row) as cur:
            cur.execute(sql.encode(), params)
            return cur.fetchall()

    return execute


def publish(
    conn: psycopg.Connection[Any] | psycopg.Cursor[Any],
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
    """Append one event to the outbox in the caller's transaction; return its id.

    A repeated ``idempotency_key`` in the same tenant returns the first event's id and adds
    no row. ``ordering_key`` orders delivery on ordered endpoints (`Event`). Never commits
    and never opens a connection. ``event_types`` (``open`` or ``known``) and ``validate``
    (``off``, ``warn`` or ``reject``) override WEBHOOKS_EVENT_TYPES and
    WEBHOOKS_VALIDATE_PAYLOADS (`producers.catalogue`).
    """
    call = Call.of(
        [Event(event_type, payload, tenant_id, idempotency_key, ordering_key)],
        max_payload_bytes=max_payload_bytes,
        event_types=event_types,
        validate=validate,
        one=True,
    )
    return call.run(PSYCOPG, psycopg_execute(_psycopg_owner(conn)))[0]


async def apublish(
    conn: psycopg.AsyncConnection[Any] | psycopg.AsyncCursor[Any],
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
    """Append one event on an AsyncConnection or AsyncCursor; see `publish`."""
    call = Call.of(
        [Event(event_type, payload, tenant_id, idempotency_key, ordering_key)],
        max_payload_bytes=max_payload_bytes,
        event_types=event_types,
        validate=validate,
        one=True,
    )
    if isinstance(conn, psycopg.AsyncCursor):
        owner: object = conn.connection
    elif isinstance(conn, psycopg.AsyncConnection):
        owner = conn
    else:
        raise UnsupportedConnection(
            f"expected a psycopg 3 AsyncConnection or AsyncCursor, got {type(conn).__name__}"
        )
    assert isinstance(owner, psycopg.AsyncConnection)
    check_transaction(owner.autocommit, owner.info.transaction_status)
    return (await call.arun(PSYCOPG, psycopg_aexecute(owner)))[0]


def psycopg_aexecute(owner: psycopg.AsyncConnection[Any]) -> AsyncExecute:
    """`psycopg_execute` on an AsyncConnection."""

    async def execute(sql: str, params: Sequence[Any]) -> Rows:
        async with psycopg.AsyncCursor(owner, row_factory=tuple_row) as cur:
            await cur.execute(sql.encode(), params)
            return await cur.fetchall()

    return execute


def publish_many(
    conn: psycopg.Connection[Any] | psycopg.Cursor[Any],
    events: Iterable[Event | tuple[str, Any] | Mapping[str, Any]],
    *,
    max_payload_bytes: int | None = None,
    event_types: EventTypes | None = None,
    validate: ValidatePayloads | None = None,
) -> list[str]:
    """Append a batch of events in one statement; return their ids in input order.

    Each item is an `Event`, a ``(event_type, payload)`` pair, or a mapping with the fields
    of `Event`. The whole batch is validated, and checked against the catalogue in one
    statement (see `publish`), before anything is sent. A batch carrying more than
    BATCH_BYTES of payload is sent in several statements, in the same transaction.
    """
    call = Call.of(
        events, max_payload_bytes=max_payload_bytes, event_types=event_types, validate=validate
    )
    execute = psycopg_execute(_psycopg_owner(conn))
    return call.run(PSYCOPG, execute)


def _as_event(item: Event | tuple[str, Any] | Mapping[str, Any]) -> Event:
    if isinstance(item, Event):
        return item
    if isinstance(item, Mapping):
        try:
            return Event(**item)
        except TypeError as exc:
            raise InvalidEvent(f"bad event mapping: {exc}") from exc
    if isinstance(item, tuple) and len(item) == 2:
        return Event(item[0], item[1])
    raise InvalidEvent(f"expected an Event, a (type, payload) pair or a mapping, got {item!r:.80}")
