"""Open Postgres connections and wrap driver errors at the boundary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from worker.errors import DatabaseError, MigrationError
from worker.store import queries
from worker.store.rows import run

#: What lends a connection for the length of a ``with`` block (`worker.app.App.connection`):
#: given to a service that must not hold one across a slow call.
Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


class Opener(Protocol):
    """Open a new autocommit connection a daemon keeps (`worker.app.App.open`).

    ``role`` names it in pg_stat_activity.
    """

    def __call__(self, role: str) -> psycopg.Connection[Any]: ...


def options(role: str) -> dict[str, Any]:
    """Return the options of every connection `worker.app.App` pools or opens for ``role``.

    Autocommit, named ``role`` in pg_stat_activity unless the DSN names it. Its own rows are
    dicts (what a test's ad hoc statement reads); the store's functions read theirs as
    dataclasses whatever the connection's default (`worker.store.rows`).
    """
    return {"autocommit": True, "row_factory": dict_row, "fallback_application_name": role}


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


def time_limit(conn: psycopg.Connection[Any], seconds: float) -> None:
    """Bound every statement of the caller's transaction to ``seconds`` (works via PgBouncer)."""
    run(conn, queries.LOCAL_STATEMENT_TIMEOUT, {"timeout": f"{round(seconds * 1000)}ms"})
