"""Publish operational events into the operations tenant, if anyone subscribes to them.

What an event says is decided by `worker.policy.operations`; this is the one place that
publishes them (an operator disabling an endpoint, the engine's health changes and
disables, the relay's dead letters). Always in the caller's transaction, so an event
exists if and only if the change it announces commits, and under
`operations.MAX_PAYLOAD_BYTES`, never WEBHOOKS_MAX_PAYLOAD_BYTES, and unchecked by the
event-type catalogue whatever WEBHOOKS_EVENT_TYPES and WEBHOOKS_VALIDATE_PAYLOADS say (the
platform's own `webhooks.*` types are not the producers' to register). An event type no
enabled endpoint of the operations tenant takes is not published at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from producers import Event, apublish, publish_many
from worker.policy.operations import MAX_PAYLOAD_BYTES, Announcement
from worker.store import queries
from worker.store.endpoints import subscribed

__all__ = ["announce", "announce_async"]


def announce(conn: psycopg.Connection[Any], events: Sequence[Announcement], tenant: str) -> None:
    """Publish ``events`` into ``tenant`` in the caller's transaction, the subscribed ones."""
    taken = {t: subscribed(conn, tenant, t) for t in _types(events)}
    chosen = [Event(e.event_type, e.payload, tenant) for e in events if taken[e.event_type]]
    if chosen:
        publish_many(
            conn, chosen, max_payload_bytes=MAX_PAYLOAD_BYTES, event_types="open", validate="off"
        )


async def announce_async(
    conn: psycopg.AsyncConnection[Any], events: Sequence[Announcement], tenant: str
) -> None:
    """Publish ``events`` as `announce` does, on an AsyncConnection (the engine)."""
    subscribed = {}
    for t in _types(events):
        cursor = await conn.execute(queries.SUBSCRIBED, _asked(tenant, t))
        subscribed[t] = await cursor.fetchone() is not None
    for e in events:
        if subscribed[e.event_type]:
            await apublish(
                conn,
                e.event_type,
                e.payload,
                tenant_id=tenant,
                max_payload_bytes=MAX_PAYLOAD_BYTES,
                event_types="open",
                validate="off",
            )


def _types(events: Sequence[Announcement]) -> list[str]:
    """Return the event types of ``events``, each once: one subscription lookup per type."""
    return list(dict.fromkeys(e.event_type for e in events))


def _asked(tenant: str, event_type: str) -> dict[str, str]:
    return {"tenant": tenant, "type": event_type}
