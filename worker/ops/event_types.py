"""The event-type catalogue: the Python API behind `webhooks event-type` and /v1/event-types.

An entry has a name (an event type producers could publish), a description, a group, and
JSON Schema versions of its payload (``data``), each with an optional example checked
against it; adding a schema adds a version and keeps the earlier ones. ``deprecated`` types
still publish; ``archived`` ones are hidden from listings unless asked, and an endpoint that
subscribes to one is told so. Every check runs before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from producers.errors import InvalidSchema
from producers.names import check_event_type, pattern_matches
from producers.schemas import check_schema, validate
from worker.errors import NotFound, WrongState
from worker.ops.openapi_webhooks import Declared, declared
from worker.ops.validation import check_description
from worker.store import event_types as rows
from worker.store.db import wrapped_errors
from worker.store.event_types import EventType as EventType
from worker.store.event_types import SchemaVersion as SchemaVersion

MAX_GROUP = 200
#: The schema an example given without one is kept under: it takes any payload.
ANY: dict[str, Any] = {}
#: An argument not given (None is a value of its own: no group, a JSON null example).
UNSET: Any = object()


@dataclass(frozen=True)
class Shown:
    """An entry with every schema version, oldest first."""

    event_type: EventType
    versions: list[SchemaVersion]


@dataclass(frozen=True)
class Imported:
    """What importing a document did (or, dry, would do) to one type."""

    name: str
    action: str  # added | new schema version | updated | unchanged
    version: int | None


def check_group(group: str | None) -> str | None:
    """Return a group name if it is one line of at most MAX_GROUP characters (None: none)."""
    if group is None:
        return None
    if not isinstance(group, str) or not group or len(group) > MAX_GROUP:
        raise InvalidSchema(f"group must be text of 1 to {MAX_GROUP} characters")
    if any(c in group for c in "\x00\n\r"):
        raise InvalidSchema("group must be one line of text")
    return group


def check_entry(schema: Any, example: Any) -> None:
    """Refuse a schema that is not JSON Schema, or an example its schema does not accept."""
    if schema is not UNSET and schema is not None:
        check_schema(schema)
        if example is not UNSET and example is not None:
            validate(schema, example, root="example")


def add(
    conn: psycopg.Connection[Any],
    name: str,
    *,
    description: str = "",
    group: str | None = None,
    schema: Any = None,
    example: Any = None,
) -> Shown:
    """Add a type, with its first schema version when ``schema`` is given."""
    check_event_type(name)
    check_description(description)
    check_group(group)
    if example is not None and schema is None:
        schema = ANY  # the example is kept, under a schema that takes any payload
    check_entry(schema, example)
    with wrapped_errors(), conn.transaction():
        if not rows.insert(conn, name, description, group):
            raise WrongState(
                f"event type {name} is already in the catalogue: use `webhooks event-type update`",
                api=f"event type {name} is already in the catalogue: PATCH it",
            )
        if schema is not None:
            rows.add_schema(conn, name, schema, example)
    return show(conn, name)


def update(
    conn: psycopg.Connection[Any],
    name: str,
    *,
    description: str | None = None,
    group: str | None = UNSET,
    schema: Any = None,
    example: Any = None,
) -> Shown:
    """Change a type: a new ``schema`` adds a version; an ``example`` is checked against the
    schema of its version (the new one, else the latest) and stored with it."""
    if description is not None:
        check_description(description)
    if group is not UNSET:
        check_group(group)
    check_entry(schema, example)
    with wrapped_errors(), conn.transaction():
        if not rows.lock(conn, name):
            raise NotFound("event type", name)
        given = group is not UNSET
        rows.update(
            conn, name, description=description, set_group=given, group=group if given else None
        )
        if schema is not None:
            rows.add_schema(conn, name, schema, example)
        elif example is not None:
            latest = rows.get(conn, name)
            if latest is None or latest.latest_version is None:
                rows.add_schema(conn, name, ANY, example)
            else:
                validate(latest.schema, example, root="example")
                rows.set_example(conn, name, latest.latest_version, example)
    return show(conn, name)


def flag(conn: psycopg.Connection[Any], name: str, which: str, value: bool) -> EventType:
    """Set (or with False clear) ``deprecated`` or ``archived``."""
    if which not in ("deprecated", "archived"):
        raise ValueError(which)
    with wrapped_errors():
        if which == "deprecated":
            done = rows.update(conn, name, deprecated=value)
        else:
            done = rows.update(conn, name, archived=value)
        found = rows.get(conn, name) if done else None
    if found is None:
        raise NotFound("event type", name)
    return found


def list_types(
    conn: psycopg.Connection[Any],
    *,
    group: str | None = None,
    archived: bool = False,
    after: str | None = None,
    limit: int = 1000,
) -> list[EventType]:
    """Return entries by name with their latest schema, archived ones only when asked."""
    with wrapped_errors():
        return rows.page(conn, group=group, archived=archived, after=after, limit=limit)


def show(conn: psycopg.Connection[Any], name: str) -> Shown:
    """Return an entry with every schema version; NotFound otherwise."""
    with wrapped_errors():
        found = rows.get(conn, name)
        if found is None:
            raise NotFound("event type", name)
        return Shown(found, rows.schemas(conn, name))


def archived_subscriptions(conn: psycopg.Connection[Any], patterns: Iterable[str]) -> list[str]:
    """Return one line per subscription (type or pattern) that names an archived type."""
    wanted = list(patterns)
    if not wanted:
        return []
    with wrapped_errors():
        gone = rows.archived(conn)
    lines = []
    for pattern in wanted:
        if pattern == "*":
            continue  # every type, not one chosen for itself
        if "*" not in pattern:
            if pattern in gone:
                lines.append(f"event type {pattern} is archived in the event-type catalogue")
            continue
        hit = [name for name in gone if pattern_matches(pattern, name)]
        if hit:
            lines.append(
                f"event type pattern {pattern} matches archived event type(s): {', '.join(hit)}"
            )
    return lines


def import_document(
    conn: psycopg.Connection[Any],
    document: object,
    *,
    source: str = "the document",
    dry_run: bool = False,
) -> list[Imported]:
    """Add or update the types an OpenAPI document's webhooks declare, all or none.

    An existing type gets a new schema version only if its schema changed; its description,
    group and example are brought in line with the document.
    """
    entries = declared(document, source)
    for entry in entries:
        _check_declared(entry, source)
    done = []
    with wrapped_errors(), conn.transaction():
        for entry in entries:
            done.append(_apply(conn, entry, dry_run))
        if dry_run:
            raise psycopg.Rollback()  # leaves the block quietly, having written nothing
    return done


def _check_declared(entry: Declared, source: str) -> None:
    where = f"{source}: webhooks.{entry.name}"
    try:
        check_event_type(entry.name)
        check_entry(entry.schema, entry.example)
    except (InvalidSchema, ValueError) as exc:
        raise InvalidSchema(f"{where}: {exc}") from None


def _apply(conn: psycopg.Connection[Any], entry: Declared, dry_run: bool) -> Imported:
    example = entry.example if entry.schema is not None else None
    if rows.insert(conn, entry.name, entry.description, entry.group):
        version = rows.add_schema(conn, entry.name, entry.schema, example) if entry.schema else None
        return Imported(entry.name, "added", version)
    rows.lock(conn, entry.name)
    current = rows.get(conn, entry.name)
    assert current is not None
    changed = (current.description, current.group) != (entry.description, entry.group)
    if changed:
        rows.update(
            conn, entry.name, description=entry.description, set_group=True, group=entry.group
        )
    if entry.schema is not None and entry.schema != current.schema:
        version = rows.add_schema(conn, entry.name, entry.schema, example)
        return Imported(entry.name, "new schema version", version)
    if example is not None and example != current.example and current.latest_version:
        rows.set_example(conn, entry.name, current.latest_version, example)
        changed = True
    return Imported(entry.name, "updated" if changed else "unchanged", current.latest_version)
