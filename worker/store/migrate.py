"""Apply the versioned SQL files of schema/ in order, once each, under an advisory lock."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import psycopg

from worker.errors import MigrationError
from worker.store import queries
from worker.store.rows import many, scalar

# pg_advisory_lock key: serialises concurrent `webhooks migrate` runs on one database.
LOCK_KEY = 0x77686B73  # "whks"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One SQL file of schema/."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """Return the SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class Status:
    """One migration as `migrate --status` lists it."""

    version: int
    name: str
    applied_at: datetime | None
    changed: bool


def load() -> list[Migration]:
    """Return the migrations shipped with the package, in version order."""
    found = []
    for entry in _files():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


#: schema/ of a source checkout: worker/store/migrate.py -> the repository's top.
SOURCE_SCHEMA = Path(__file__).resolve().parents[2] / "schema"


def _files() -> list[Traversable]:
    try:
        return list(resources.files("worker.migrations").iterdir())
    except ModuleNotFoundError:
        # Running from a source checkout that was not installed: read schema/ directly.
        return list(SOURCE_SCHEMA.iterdir())


def expected_version() -> int:
    """Return the version the code needs (the newest shipped migration)."""
    return max((m.version for m in load()), default=0)


@dataclass(frozen=True)
class Applied:
    """A row of webhooks.schema_migrations: a migration applied, and its checksum then."""

    version: int
    name: str
    checksum: str
    applied_at: datetime


def _applied(conn: psycopg.Connection[Any]) -> dict[int, Applied]:
    if scalar(conn, queries.MIGRATIONS_TABLE) is None:
        return {}
    return {row.version: row for row in many(conn, Applied, queries.APPLIED_MIGRATIONS)}


def _check_unchanged(migrations: list[Migration], applied: dict[int, Applied]) -> None:
    for m in migrations:
        row = applied.get(m.version)
        if row is not None and row.checksum != m.checksum:
            raise MigrationError(
                f"migration {m.version:04d}_{m.name}.sql was edited after it was applied "
                "(checksum differs); add a new migration instead"
            )


def status(conn: psycopg.Connection[Any]) -> list[Status]:
    """List every shipped migration with when it was applied (None: pending)."""
    applied = _applied(conn)
    out = []
    for m in load():
        row = applied.get(m.version)
        out.append(
            Status(
                m.version,
                m.name,
                row.applied_at if row else None,
                bool(row and row.checksum != m.checksum),
            )
        )
    return out


def current_version(conn: psycopg.Connection[Any]) -> int:
    """Return the newest applied version (0 when none)."""
    return max(_applied(conn), default=0)


def migrate(conn: psycopg.Connection[Any]) -> list[Migration]:
    """Apply pending migrations, each in its own transaction; return those applied.

    The connection must be in autocommit mode. A session advisory lock makes a second
    concurrent run wait, then find nothing left to do.
    """
    migrations = load()
    conn.execute(queries.MIGRATE_LOCK, {"key": LOCK_KEY})
    try:
        with conn.transaction():
            conn.execute(queries.MIGRATIONS_BOOTSTRAP)
        applied = _applied(conn)
        _check_unchanged(migrations, applied)
        done = []
        for m in migrations:
            if m.version in applied:
                continue
            with conn.transaction():
                conn.execute(m.sql.encode())
                conn.execute(
                    queries.RECORD_MIGRATION,
                    {"version": m.version, "name": m.name, "checksum": m.checksum},
                )
            done.append(m)
        return done
    finally:
        conn.execute(queries.MIGRATE_UNLOCK, {"key": LOCK_KEY})
