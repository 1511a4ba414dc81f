"""Dead letters' rows: list, show, count, and the batches a replay takes.

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from worker.store import queries
from worker.store.deliveries import Attempt
from worker.store.rows import many, one, run, scalar


@dataclass(frozen=True)
class Letter:
    """A dead letter as lists show it (`GET /v1/dead-letters`, `webhooks dlq list`)."""

    delivery_id: int
    tenant_id: str
    event_id: str
    endpoint_id: str
    url: str
    event_type: str
    reason: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    died_at: datetime
    replayed_at: datetime | None
    replay_count: int
    #: When `dlq discard` gave it up (lists show it with ``history`` only).
    discarded_at: datetime | None
    #: The event's ordering key, on an ordered endpoint ('' for none).
    ordering_key: str | None


@dataclass(frozen=True, kw_only=True)
class ShownLetter:
    """One dead letter with its event, endpoint, delivery state and every attempt."""

    delivery_id: int
    tenant_id: str
    event_id: str
    endpoint_id: str
    event_type: str
    reason: str
    attempts: tuple[Attempt, ...] = ()
    last_status_code: int | None
    last_error: str | None
    died_at: datetime
    replayed_at: datetime | None
    replay_count: int
    replays: list[dict[str, Any]]
    announced_at: datetime | None
    url: str
    enabled: bool
    disabled_reason: str | None
    payload: Any
    event_created_at: datetime
    delivery_status: str
    ordering_key: str | None = None
    discarded_at: datetime | None = None
    discarded_by: str | None = None
    #: A later event of its ordering key was sent after it died (its key went on).
    order_broken: bool = False


@dataclass(frozen=True)
class DisabledEndpoint:
    """A disabled endpoint that selected dead letters go to."""

    id: str
    url: str


@dataclass(frozen=True)
class Replayed:
    """One row of a replay batch: how many it marked, and one delivery re-armed (or none)."""

    marked: int
    id: int | None
    message_id: str | None
    #: A later event of its ordering key was sent already: this one arrives out of order.
    out_of_order: bool | None = None


@dataclass(frozen=True)
class _Id:
    delivery_id: int


def list_rows(conn: psycopg.Connection[Any], params: dict[str, Any]) -> list[Letter]:
    """Return the dead letters queries.LIST_DEAD_LETTERS selects, newest first."""
    return many(conn, Letter, queries.LIST_DEAD_LETTERS, params)


def shown(
    conn: psycopg.Connection[Any], delivery_id: int, tenant_id: str | None
) -> ShownLetter | None:
    """Return one dead letter (attempts left empty), or None."""
    params = {"id": delivery_id, "tenant": tenant_id}
    return one(conn, ShownLetter, queries.SHOW_DEAD_LETTER, params)


def count(conn: psycopg.Connection[Any], selection: dict[str, Any]) -> int:
    """Return how many current dead letters a selection (its parameters) holds."""
    return int(scalar(conn, queries.COUNT_DEAD_LETTERS, selection) or 0)


def current_ids(conn: psycopg.Connection[Any], selection: dict[str, Any]) -> set[int]:
    """Return which of the selection's ``ids`` name a current dead letter."""
    return {r.delivery_id for r in many(conn, _Id, queries.CURRENT_DEAD_LETTER_IDS, selection)}


def disabled_endpoints(
    conn: psycopg.Connection[Any], selection: dict[str, Any]
) -> list[DisabledEndpoint]:
    """Return the disabled endpoints the selection's current dead letters go to."""
    return many(conn, DisabledEndpoint, queries.DISABLED_SELECTED_ENDPOINTS, selection)


def enable_endpoints(conn: psycopg.Connection[Any], endpoint_ids: list[str]) -> None:
    """Enable endpoints and close their circuits, for a replay to them."""
    run(conn, queries.ENABLE_ENDPOINTS, {"ids": endpoint_ids})


def discard_batch(conn: psycopg.Connection[Any], params: dict[str, Any]) -> list[int]:
    """Give up one batch of the selection; return their delivery ids."""
    return [r.delivery_id for r in many(conn, _Id, queries.DISCARD_BATCH, params)]


def replay_batch(conn: psycopg.Connection[Any], params: dict[str, Any]) -> list[Replayed]:
    """Re-arm one batch of the selection and mark its dead letters replayed."""
    return many(conn, Replayed, queries.REPLAY_BATCH, params)
