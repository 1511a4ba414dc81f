"""Run a named statement and read its rows as frozen dataclasses: the one way rows leave SQL.

The pattern every store module follows (and the one engine/, relay/ and observe/ move to):

- A statement lives in a ``.sql`` file under a ``-- name:`` header and is bound as a constant
  in `worker.store.queries`. Only modules of ``worker/store`` import those constants, run
  them, or import ``psycopg.rows``; ``tests/unit/test_typed_rows.py`` enforces it.
- Per area one module (``store/endpoints.py``, ``store/deliveries.py``, ...) holds what the
  area's statements return, as ``@dataclass(frozen=True)`` classes whose field names are the
  statement's column names, and functions that take a connection and typed arguments, run
  one statement (`one`, `many`, `scalar`, `run` here; `aone`, `amany`, `arun` on an
  AsyncConnection) and return those dataclasses, an int, a
  bool or None. A function is named by what it does (``endpoints.get``, ``dlq.count``).
- The callers (ops, cli, api, portal, ...) read attributes: a renamed column then fails
  under mypy, not at run time. A record the caller needs in another shape is built from the
  row dataclass by the caller (`worker.ops.endpoint.Endpoint.from_row`); a record that is
  the row itself (`worker.store.apikeys.ApiKey`) is defined here once and re-exported.
- What goes out as JSON (the API's documents) is ``dataclasses.asdict`` of the dataclass:
  its fields, in their order, are the document's keys.

Rows are mapped by `typed`: like psycopg's ``class_row``, but the columns the dataclass does
not name are left out, so a ``select *`` keeps working when a migration adds a column (and a
document does not grow by accident). A field the statement does not return takes its
default, or fails at the first row without one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg.rows import BaseRowFactory, RowMaker, tuple_row

if TYPE_CHECKING:
    from psycopg._cursor_base import BaseCursor

T = TypeVar("T")

#: The parameters of a named statement.
Params = Mapping[str, Any] | None


def typed(cls: type[T]) -> BaseRowFactory[T]:
    """Return a row factory that builds ``cls`` (a dataclass) from the columns it names."""
    declared = dataclasses.fields(cls)  # type: ignore[arg-type]
    fields = {f.name for f in declared}
    # Taken by position when the statement returns every field (the engine's claim maps a
    # row per delivery: half the cost of keywords).
    order = [f.name for f in declared] if all(f.init and not f.kw_only for f in declared) else []

    def factory(cursor: BaseCursor[Any, Any]) -> RowMaker[T]:
        names = [c.name for c in cursor.description or ()]
        # A repeated column name keeps its last value, as dict rows did (``d.*, d.id::text
        # as id``).
        picked = {name: i for i, name in enumerate(names) if name in fields}
        if len(order) > 1 and len(picked) == len(order):
            get = itemgetter(*(picked[name] for name in order))

            def positional(values: Sequence[Any]) -> T:
                return cls(*get(values))

            return positional

        def make(values: Sequence[Any]) -> T:
            return cls(**{name: values[i] for name, i in picked.items()})

        return make

    return factory


def one(conn: psycopg.Connection[Any], cls: type[T], sql: str, params: Params = None) -> T | None:
    """Run ``sql`` and return its first row as ``cls``, or None when it returns none."""
    with conn.cursor(row_factory=typed(cls)) as cur:
        return cur.execute(sql, params).fetchone()


def many(conn: psycopg.Connection[Any], cls: type[T], sql: str, params: Params = None) -> list[T]:
    """Run ``sql`` and return every row as ``cls``."""
    with conn.cursor(row_factory=typed(cls)) as cur:
        return cur.execute(sql, params).fetchall()


async def aone(
    conn: psycopg.AsyncConnection[Any], cls: type[T], sql: str, params: Params = None
) -> T | None:
    """`one` on an AsyncConnection (the engine)."""
    async with conn.cursor(row_factory=typed(cls)) as cur:
        await cur.execute(sql, params)
        return await cur.fetchone()


async def amany(
    conn: psycopg.AsyncConnection[Any], cls: type[T], sql: str, params: Params = None
) -> list[T]:
    """`many` on an AsyncConnection (the engine)."""
    async with conn.cursor(row_factory=typed(cls)) as cur:
        await cur.execute(sql, params)
        return await cur.fetchall()


async def arun(conn: psycopg.AsyncConnection[Any], sql: str, params: Params = None) -> int:
    """`run` on an AsyncConnection (the engine)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(sql, params)
        return cur.rowcount


def scalar(conn: psycopg.Connection[Any], sql: str, params: Params = None) -> Any:
    """Run ``sql`` and return the first column of its first row (None when no row)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(sql, params).fetchone()
    return row[0] if row is not None else None


def run(conn: psycopg.Connection[Any], sql: str, params: Params = None) -> int:
    """Run a statement whose rows nobody reads; return how many rows it touched."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(sql, params).rowcount
