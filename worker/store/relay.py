"""The relay's rows: fan-out, the scheduler's passes, circuit probes and new dead letters.

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from worker.policy import operations
from worker.store import queries
from worker.store.engine import Woken
from worker.store.rows import many, one, run, scalar

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class FannedOut:
    """One row of a fan-out: the batch's event count, and a delivery it created (or none),
    or how many of the batch's events an endpoint's payload filter dropped."""

    events: int
    id: int | None
    #: None for a delivery parked behind an open circuit: it gets no message.
    message_id: str | None
    #: Set on the rows that count what an endpoint's filter dropped (no delivery created).
    filtered_endpoint: str | None = None
    filtered: int | None = None


@dataclass(frozen=True)
class Due:
    """A delivery the scheduler enqueues; ``had_message``: its lease ran out, not a retry."""

    id: int
    message_id: str
    had_message: bool


@dataclass(frozen=True)
class Probe:
    """The delivery an open circuit's probe is: its next attempt."""

    id: int
    message_id: str
    endpoint_id: str


@dataclass(frozen=True)
class Rechecked:
    """Queued deliveries made due at once after Redis lost its data; ``lost``: not new."""

    rechecked: int
    lost: int


@dataclass(frozen=True)
class _Endpoint:
    endpoint_id: str


@dataclass(frozen=True)
class DeadLetter:
    """A new dead letter, with what a webhooks.delivery.dead event says of it."""

    delivery_id: int
    tenant_id: str
    event_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_type: str
    reason: str
    attempts: int
    died_at: datetime
    url: str

    def announced(self) -> operations.DeadLetter:
        """Return what its webhooks.delivery.dead event says of it."""
        return operations.DeadLetter(
            delivery_id=self.delivery_id,
            tenant_id=self.tenant_id,
            event_id=str(self.event_id),
            endpoint_id=str(self.endpoint_id),
            event_type=self.event_type,
            reason=self.reason,
            attempts=self.attempts,
            died_at=self.died_at,
            url=self.url,
        )


def clock(conn: Conn) -> datetime | None:
    """Return Postgres's clock."""
    now: datetime | None = scalar(conn, queries.CLOCK)
    return now


def listen(conn: Conn) -> None:
    """Listen for publishes on ``conn`` (a connection kept for that: it reads no rows)."""
    conn.row_factory = tuple_row
    run(conn, queries.LISTEN)


def fan_out(conn: Conn, batch: int, lease: float, max_age: float) -> list[FannedOut]:
    """Fan out one batch of committed events into deliveries, in one statement."""
    params = {"batch": batch, "lease": lease, "max_age": max_age}
    return many(conn, FannedOut, queries.FAN_OUT, params)


def recheck_queued(conn: Conn, before: datetime | None) -> Rechecked:
    """Make every queued delivery due now; count those queued before ``before`` as lost."""
    row = one(conn, Rechecked, queries.RECHECK_QUEUED, {"before": before})
    assert row is not None  # counts: always one row
    return row


def schedule(conn: Conn, batch: int, lease: float) -> list[Due]:
    """Take a batch of due and lease-expired deliveries, each with a message and a lease."""
    return many(conn, Due, queries.SCHEDULE, {"batch": batch, "lease": lease})


def extend_lease(conn: Conn, ids: list[int], lease: float) -> None:
    """Leave these queued deliveries to their messages ``lease`` seconds more."""
    run(conn, queries.EXTEND_LEASE, {"ids": ids, "lease": lease})


def probe(conn: Conn, batch: int, lease: float) -> list[Probe]:
    """Give each open circuit whose cooldown is over its one probe."""
    return many(conn, Probe, queries.PROBE, {"batch": batch, "lease": lease})


def close_idle(conn: Conn) -> list[str]:
    """Close open circuits with nothing left to probe; return their endpoints."""
    return [r.endpoint_id for r in many(conn, _Endpoint, queries.CLOSE_IDLE)]


def sweep_parked(conn: Conn) -> int:
    """Make due the deliveries parked behind a closed circuit; return how many."""
    return run(conn, queries.SWEEP_PARKED)


def sweep_ordered(conn: Conn, batch: int, lease: float, block: bool) -> list[Woken]:
    """Wake the first waiting delivery of ordering keys with nothing pending before it."""
    params = {"batch": batch, "lease": lease, "block": block}
    return many(conn, Woken, queries.SWEEP_ORDERED, params)


def new_dead_letters(conn: Conn, batch: int) -> list[DeadLetter]:
    """Take a batch of dead letters nobody has counted yet, marking them announced."""
    return many(conn, DeadLetter, queries.ANNOUNCE, {"batch": batch})
