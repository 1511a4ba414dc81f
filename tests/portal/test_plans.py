"""The portal's pages read indexes bounded by the page, not the history.

Plans, not timings: with sequential scans priced out (the test database is small, where a
scan is the cheapest plan), each statement must be able to use the index meant for it.
The latency at a million deliveries is measured by `python -m tests.portal.latency`.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from worker.store import queries


def plan(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> str:
    with conn.transaction():
        conn.execute("set local enable_seqscan = off")
        row = conn.execute("explain (format json) " + sql, params).fetchone()
    assert row is not None
    return json.dumps(next(iter(row.values())) if isinstance(row, dict) else row[0])


def test_the_event_log_pages_by_the_outbox_key_without_sorting_it(
    conn: psycopg.Connection[Any],
) -> None:
    found = plan(
        conn,
        queries.LIST_EVENTS,
        {"tenant": "acme", "event_type": None, "after": None, "limit": 51},
    )
    assert "outbox_pkey" in found
    assert '"Node Type": "Sort"' not in found


def test_the_last_24_hours_read_the_attempts_time_index(conn: psycopg.Connection[Any]) -> None:
    hourly = plan(conn, queries.DELIVERIES_BY_HOUR, {"tenant": "acme"})
    assert "attempts_started" in hourly
