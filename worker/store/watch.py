"""What `webhooks dev` shows while it runs: new attempts, new dead letters, the demo's end.

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from worker.store import queries
from worker.store.rows import many


@dataclass(frozen=True)
class AttemptSeen:
    """An attempt with its delivery's state, event type and endpoint URL."""

    id: int
    delivery_id: int
    number: int
    status_code: int | None
    error_kind: str | None
    error: str | None
    duration_seconds: float
    event_type: str
    url: str
    status: str
    next_attempt_at: datetime


@dataclass(frozen=True)
class LetterSeen:
    """A current dead letter."""

    delivery_id: int
    reason: str
    attempts: int


@dataclass(frozen=True)
class _Count:
    status: str
    n: int


def attempts_after(conn: psycopg.Connection[Any], after: int) -> list[AttemptSeen]:
    """Return the attempts recorded after attempt id ``after``, in order."""
    return many(conn, AttemptSeen, queries.DEV_ATTEMPTS, {"after": after})


def dead_letters(conn: psycopg.Connection[Any]) -> list[LetterSeen]:
    """Return every current dead letter."""
    return many(conn, LetterSeen, queries.DEV_DEAD_LETTERS)


def outcomes(conn: psycopg.Connection[Any], events: list[str]) -> dict[str, int]:
    """Return how many deliveries of these events are in each state."""
    rows = many(conn, _Count, queries.DEV_DEMO_OUTCOMES, {"events": events})
    return {r.status: r.n for r in rows}
