"""The trace contexts publish() stored with events, for the relay's and the engine's spans.

Read only when tracing is on (`worker.observe.tracing`): one statement after each fan-out
batch, one per claimed batch of deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from worker.store import queries
from worker.store.rows import amany, many

__all__ = ["EventTrace", "TracedEvent", "event_traces", "fanned_out_traces"]


@dataclass(frozen=True)
class TracedEvent:
    """An event the relay fanned out, with its trace context and its deliveries' count."""

    event_id: str
    tenant_id: str
    event_type: str
    trace_context: dict[str, str]
    deliveries: int


@dataclass(frozen=True)
class EventTrace:
    """An event's stored trace context."""

    event_id: str
    trace_context: dict[str, str]


def fanned_out_traces(conn: psycopg.Connection[Any], delivery_ids: list[int]) -> list[TracedEvent]:
    """Return the traced events of these new deliveries."""
    return many(conn, TracedEvent, queries.FANNED_OUT_TRACES, {"ids": delivery_ids})


async def event_traces(
    conn: psycopg.AsyncConnection[Any], event_ids: list[str]
) -> dict[str, dict[str, str]]:
    """Return event id -> trace context, for the events of these that have one."""
    rows = await amany(conn, EventTrace, queries.EVENT_TRACES, {"ids": event_ids})
    return {row.event_id: row.trace_context for row in rows}
