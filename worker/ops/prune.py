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
from worker.store.db import wrapped_errors

BATCH = 1000

# Event ids are UUIDv7, so "older than the cutoff" is an id range on the primary key. An
# event may go once relayed and with no pending delivery (and no dead one unless asked).
# The same condition and the same counts serve the deletion and its dry run.
_PRUNABLE = """
    o.id < %(boundary)s and o.relayed_at is not null
    and not exists (
        select 1 from webhooks.deliveries d
        where d.event_id = o.id
          and (d.status = 'pending' or (d.status = 'dead' and not %(include_dead)s)))
"""

_COUNTS = """
    (select count(*) from webhooks.deliveries d where d.event_id in (select id from doomed))
        as deliveries,
    (select count(*) from webhooks.attempts a
       join webhooks.deliveries d on d.id = a.delivery_id
      where d.event_id in (select id from doomed)) as attempts,
    (select count(*) from webhooks.dead_letters dl
      where dl.event_id in (select id from doomed)) as dead_letters
"""

PRUNE = (
    """
with doomed as (
    select o.id
    from webhooks.outbox o
    where """
    + _PRUNABLE
    + """
    order by o.id
    limit %(batch)s
    for update skip locked
), counted as (
    select """
    + _COUNTS
    + """
), gone as (
    delete from webhooks.outbox o using doomed where o.id = doomed.id returning o.id
)
select (select count(*) from gone) as events, deliveries, attempts, dead_letters from counted
"""
)

DRY_RUN = (
    """
with doomed as (
    select o.id from webhooks.outbox o where """
    + _PRUNABLE
    + """
)
select (select count(*) from doomed) as events, """
    + _COUNTS
)


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
            row = conn.execute(DRY_RUN, params).fetchone()
            if row:
                total.events = int(row["events"])
                total.deliveries = int(row["deliveries"])
                total.attempts = int(row["attempts"])
                total.dead_letters = int(row["dead_letters"])
            return total
        while True:
            with conn.transaction():
                row = conn.execute(PRUNE, params).fetchone()
            if not row or not row["events"]:
                return total
            total.events += int(row["events"])
            total.deliveries += int(row["deliveries"])
            total.attempts += int(row["attempts"])
            total.dead_letters += int(row["dead_letters"])
