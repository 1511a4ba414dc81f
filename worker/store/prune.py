"""Retention: delete finished events older than a boundary, with what goes along, in batches.

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from worker.store import queries
from worker.store.rows import one


@dataclass(frozen=True)
class Counts:
    """Events deleted (or that would be), with their deliveries, attempts and dead letters."""

    events: int
    deliveries: int
    attempts: int
    dead_letters: int


def prune_batch(conn: psycopg.Connection[Any], params: dict[str, Any]) -> Counts:
    """Delete one batch of prunable events (parameters of queries.PRUNE_BATCH); count it."""
    row = one(conn, Counts, queries.PRUNE_BATCH, params)
    return row if row is not None else Counts(0, 0, 0, 0)


def dry_run(conn: psycopg.Connection[Any], params: dict[str, Any]) -> Counts:
    """Count what pruning with these parameters would delete."""
    row = one(conn, Counts, queries.PRUNE_DRY_RUN, params)
    return row if row is not None else Counts(0, 0, 0, 0)
