"""Open Postgres connections and wrap driver errors at the boundary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from worker.errors import DatabaseError, MigrationError

#: What lends a connection for the length of a ``with`` block (`worker.app.App.connection`):
#: given to a service that must not hold one across a slow call.
Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


class Opener(Protocol):
    """Open a new autocommit connection a daemon keeps (`worker.app.App.open`).

    ``role`` names it in pg_stat_activity; rows are dicts unless ``dict_rows`` is False.
    """

    def __call__(self, role: str, *, dict_rows: bool = True) -> psycopg.Connection[Any]: ...


#: Raised by Postgres when a relation is missing: the schema is not migrated.
UNDEFINED_TABLE = "42P01"
INVALID_SCHEMA = "3F000"


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[dict[str, object]]:
    """Open a connection returning dict rows; raise DatabaseError when Postgres is unreachable."""
    try:
        return psycopg.connect(
            url,
            autocommit=autocommit,
            row_factory=dict_row,
            connect_timeout=10,
            fallback_application_name="webhooks",
        )
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(f"cannot connect to Postgres: {first}") from exc


@contextmanager
def wrapped_errors() -> Iterator[None]:
    """Turn psycopg errors into WebhooksError subclasses an operator can read."""
    try:
        yield
    except psycopg.Error as exc:
        if exc.sqlstate in (UNDEFINED_TABLE, INVALID_SCHEMA):
            raise MigrationError(
                "the webhooks schema is missing or behind: run `webhooks migrate`",
                api="the server's database schema is missing or behind its code: "
                "its operator must migrate it",
            ) from exc
        text = str(exc).strip().splitlines()
        raise DatabaseError(text[0] if text else type(exc).__name__, exc.sqlstate) from exc
