"""Delete what is older than the retention period, in short batches (`webhooks prune`).

An event goes with its deliveries, attempts and dead letters once every delivery is
finished. An event with a pending delivery is never removed; one with a current dead letter
only when asked (``include_dead``), so nothing an operator may still replay disappears.
Each batch is one short transaction that skips rows locked by live work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from producers.ids import uuid7_floor
from worker.store import prune as rows
from worker.store.db import wrapped_errors
from worker.store.prune import Counts

#: Events deleted per transaction.
BATCH = 1000

#: Seconds of history under which a retention is more likely a slip (a wrong unit, a zero)
#: than a policy: the command line asks before pruning that close to now.
SHORT_RETENTION = 3600.0


def is_short(retention: float) -> bool:
    """Return whether keeping ``retention`` seconds of history needs an operator's say-so."""
    return retention < SHORT_RETENTION


@dataclass
class Pruned:
    """How much was (or, in a dry run, would be) deleted."""

    events: int = 0
    deliveries: int = 0
    attempts: int = 0
    dead_letters: int = 0
    dry_run: bool = False


def prune(
    conn: psycopg.Connection[Any],
    cutoff: datetime,
    *,
    include_dead: bool = False,
    dry_run: bool = False,
) -> Pruned:
    """Delete finished events created before ``cutoff``, batch by batch."""
    params = {
        "boundary": uuid7_floor(int(cutoff.timestamp() * 1000)),
        "include_dead": include_dead,
        "batch": BATCH,
    }
    total = Pruned(dry_run=dry_run)
    with wrapped_errors():
        if dry_run:
            _add(total, rows.dry_run(conn, params))
            return total
        while True:
            with conn.transaction():
                batch = rows.prune_batch(conn, params)
            if not batch.events:
                return total
            _add(total, batch)


def _add(total: Pruned, counts: Counts) -> None:
    total.events += counts.events
    total.deliveries += counts.deliveries
    total.attempts += counts.attempts
    total.dead_letters += counts.dead_letters
