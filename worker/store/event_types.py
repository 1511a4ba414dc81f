"""The event-type catalogue (webhooks.event_types and webhooks.event_type_schemas).

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
A type keeps every schema version it was given; the latest is the highest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from worker.store import queries
from worker.store.rows import many, run, scalar


@dataclass(frozen=True)
class EventType:
    """A catalogue entry with its latest schema version (None, None, None when it has none)."""

    name: str
    description: str
    group: str | None
    deprecated: bool
    archived: bool
    latest_version: int | None
    schema: Any
    example: Any
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SchemaVersion:
    """One schema version of a type and its example (None: no example)."""

    version: int
    schema: Any
    example: Any
    created_at: datetime


def insert(conn: psycopg.Connection[Any], name: str, description: str, group: str | None) -> bool:
    """Add an entry; False when the name is taken."""
    params = {"name": name, "description": description, "group": group}
    return scalar(conn, queries.INSERT_EVENT_TYPE, params) is not None


def lock(conn: psycopg.Connection[Any], name: str) -> bool:
    """Lock an entry until the transaction ends; False when there is none."""
    return scalar(conn, queries.LOCK_EVENT_TYPE, {"name": name}) is not None


def update(
    conn: psycopg.Connection[Any],
    name: str,
    *,
    description: str | None = None,
    set_group: bool = False,
    group: str | None = None,
    deprecated: bool | None = None,
    archived: bool | None = None,
) -> bool:
    """Change an entry's fields (None keeps each; the group when ``set_group``); False if none."""
    params = {
        "name": name,
        "description": description,
        "set_group": set_group,
        "group": group,
        "deprecated": deprecated,
        "archived": archived,
    }
    return scalar(conn, queries.UPDATE_EVENT_TYPE, params) is not None


def add_schema(conn: psycopg.Connection[Any], name: str, schema: Any, example: Any) -> int:
    """Store the next schema version of a (locked) type; return its number."""
    params = {
        "name": name,
        "schema": Jsonb(schema),
        "example": None if example is None else Jsonb(example),
    }
    version: int = scalar(conn, queries.ADD_EVENT_TYPE_SCHEMA, params)
    return version


def set_example(conn: psycopg.Connection[Any], name: str, version: int, example: Any) -> None:
    """Replace the example of one schema version."""
    params = {"name": name, "version": version, "example": Jsonb(example)}
    run(conn, queries.SET_EVENT_TYPE_EXAMPLE, params)


def page(
    conn: psycopg.Connection[Any],
    *,
    group: str | None = None,
    archived: bool = False,
    after: str | None = None,
    limit: int = 1000,
) -> list[EventType]:
    """Return entries by name after ``after``: in ``group`` or all, archived ones if asked."""
    params = {"name": None, "after": after, "group": group, "archived": archived, "limit": limit}
    return many(conn, EventType, queries.EVENT_TYPES, params)


def get(conn: psycopg.Connection[Any], name: str) -> EventType | None:
    """Return one entry (archived or not) with its latest schema, or None."""
    params = {"name": name, "after": None, "group": None, "archived": True, "limit": 1}
    found = many(conn, EventType, queries.EVENT_TYPES, params)
    return found[0] if found else None


def schemas(conn: psycopg.Connection[Any], name: str) -> list[SchemaVersion]:
    """Return every schema version of a type, oldest first."""
    return many(conn, SchemaVersion, queries.EVENT_TYPE_SCHEMAS, {"name": name})


@dataclass(frozen=True)
class _Name:
    name: str


def archived(conn: psycopg.Connection[Any]) -> list[str]:
    """Return the names of the archived types."""
    return [row.name for row in many(conn, _Name, queries.ARCHIVED_EVENT_TYPES)]
