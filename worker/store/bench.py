"""What `webhooks bench` reads from the database it owns: counts, stages, the server.

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from worker.store import queries
from worker.store.rows import many, one, run, scalar


@dataclass(frozen=True)
class State:
    """Unrelayed events and deliveries by status, with the attempts made."""

    unrelayed: int
    deliveries: int
    pending: int
    succeeded: int
    dead: int
    attempts: int


@dataclass(frozen=True)
class Unsuccessful:
    """One of the commonest reasons attempts did not succeed, and how many."""

    error_kind: str | None
    error: str | None
    n: int


@dataclass(frozen=True)
class Stage:
    """When a succeeded delivery was created and its successful attempt started (epoch s)."""

    event_id: str
    endpoint_id: str
    created: float
    started: float


@dataclass(frozen=True)
class Server:
    """The Postgres version and the settings that change the figures most."""

    v: str
    sc: str
    f: str


def truncate(conn: psycopg.Connection[Any]) -> None:
    """Empty the history tables (the endpoints stay).

    A relay left running between phases reads these tables in its own order; a deadlock
    with it ends its statement or this one, so this one is tried again.
    """
    for attempt in range(5):
        try:
            run(conn, queries.BENCH_TRUNCATE)
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == 4:
                raise


def state(conn: psycopg.Connection[Any]) -> State:
    """Return the counts the bench waits on and checks."""
    row = one(conn, State, queries.BENCH_STATE)
    assert row is not None  # counts: always one row
    return State(*(int(v) for v in vars(row).values()))  # sum() answers a numeric


def listening(conn: psycopg.Connection[Any], since: datetime) -> bool:
    """Tell whether a relay started at ``since`` listens yet."""
    return bool(scalar(conn, queries.BENCH_LISTENING, {"since": since}))


def worker_connections(conn: psycopg.Connection[Any]) -> int | None:
    """Return how many Postgres connections the worker processes hold."""
    n: int | None = scalar(conn, queries.BENCH_WORKER_CONNECTIONS)
    return n


def unsuccessful(conn: psycopg.Connection[Any]) -> list[Unsuccessful]:
    """Return the five commonest reasons attempts did not succeed."""
    return many(conn, Unsuccessful, queries.BENCH_UNSUCCESSFUL)


def stages(conn: psycopg.Connection[Any]) -> list[Stage]:
    """Return the creation and successful-attempt times of every succeeded delivery."""
    return many(conn, Stage, queries.BENCH_STAGES)


def server(conn: psycopg.Connection[Any]) -> Server:
    """Return the server's version and durability settings."""
    row = one(conn, Server, queries.BENCH_SERVER)
    assert row is not None
    return row
