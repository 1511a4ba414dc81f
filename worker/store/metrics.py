"""The relay's backlog gauges, read in one time-bounded query (`queries.BACKLOG`).

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from worker.store import queries
from worker.store.db import time_limit
from worker.store.rows import one


@dataclass(frozen=True)
class Backlog:
    """Each backlog gauge, named as its metric without the ``webhooks_`` prefix."""

    outbox_pending: int
    outbox_oldest_age_seconds: float
    deliveries_pending: int
    deliveries_due_oldest_age_seconds: float
    dead_letters_current: int
    endpoints_disabled: int
    endpoints_circuit_open: int
    ordering_keys_blocked: int


def backlog(conn: psycopg.Connection[Any], seconds: float) -> Backlog:
    """Read the backlog gauges in one transaction whose statements take ``seconds`` at most."""
    with conn.transaction():
        time_limit(conn, seconds)
        row = one(conn, Backlog, queries.BACKLOG)
    assert row is not None  # an aggregate: always one row
    return row
