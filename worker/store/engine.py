"""The engine's rows: claim, record and release a batch, fold endpoint health, count rates.

Async functions over the engine's `psycopg.AsyncConnection` (retried by
`worker.engine.database.Database.run`), and the sync claim and record the endpoint test
(`worker.ops.ping`) runs through the same statements. Rows are frozen dataclasses read through
`worker.store.rows` (its docstring has the pattern); a claim row is `plan.Claimed` itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from worker.policy.plan import Claimed
from worker.store import queries
from worker.store.rows import amany, aone, arun, many, one, run

AsyncConn = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class Recorded:
    """A delivery an attempt was recorded for: its status before (`was`) and after; or, with
    `was` 'waiting' and a `message_id`, the next delivery of an ordering key it woke."""

    id: int
    status: str
    was: str
    message_id: str | None


@dataclass(frozen=True)
class HealthRow:
    """An endpoint's stored health, locked for a batch (`queries.HEALTH_LOCK`)."""

    id: str
    tenant_id: str
    url: str
    consecutive_failures: int
    failing_since: datetime | None
    circuit_open_until: datetime | None
    circuit_cooldown: float | None
    circuit_probe_id: int | None
    circuit_probe_until: datetime | None


@dataclass(frozen=True)
class Disabled:
    """An endpoint the engine disabled, and how many pending deliveries it dead-lettered."""

    id: uuid.UUID
    tenant_id: str
    url: str
    disabled_at: datetime | None
    dead_lettered: int


@dataclass(frozen=True)
class _Id:
    id: int


@dataclass(frozen=True)
class _Count:
    endpoint_id: str
    count: int


def _claim_params(ids: list[int], message_ids: list[str], lock: float) -> dict[str, Any]:
    return {"ids": ids, "message_ids": message_ids, "lock": lock}


async def claim(
    conn: AsyncConn, ids: list[int], message_ids: list[str], lock: float
) -> list[Claimed]:
    """Claim the deliveries these messages name for ``lock`` seconds; return those claimed."""
    return await amany(conn, Claimed, queries.CLAIM, _claim_params(ids, message_ids, lock))


def claim_one(
    conn: psycopg.Connection[Any], delivery_id: int, message_id: str, lock: float
) -> Claimed | None:
    """Claim one delivery as `claim` does, on a sync connection (the endpoint test)."""
    return one(conn, Claimed, queries.CLAIM, _claim_params([delivery_id], [message_id], lock))


async def release(conn: AsyncConn, rows: list[dict[str, Any]], ids: list[int]) -> set[int]:
    """Put deliveries back or kill them (`queries.RELEASE` rows); return the ids moved."""
    params = {"rows": Jsonb(rows), "ids": ids}
    return {r.id for r in await amany(conn, _Id, queries.RELEASE, params)}


@dataclass(frozen=True)
class Woken:
    """The next delivery of an ordering key, woken with a message of its own."""

    id: int
    message_id: str


async def order_next(conn: AsyncConn, finished: list[int], lease: float) -> list[Woken]:
    """Wake the next delivery of the keys of these finished ordered deliveries."""
    return await amany(conn, Woken, queries.ORDER_NEXT, {"ids": finished, "lease": lease})


def order_next_sync(
    conn: psycopg.Connection[Any], finished: list[int], lease: float
) -> list[Woken]:
    """Wake the next deliveries as `order_next` does, on a sync connection (operators)."""
    return many(conn, Woken, queries.ORDER_NEXT, {"ids": finished, "lease": lease})


async def record(conn: AsyncConn, params: dict[str, Any]) -> list[Recorded]:
    """Record a batch of attempts (`queries.RECORD` parameters); return the deliveries."""
    return await amany(conn, Recorded, queries.RECORD, params)


def record_sync(conn: psycopg.Connection[Any], params: dict[str, Any]) -> None:
    """Record attempts as `record` does, on a sync connection (the endpoint test)."""
    run(conn, queries.RECORD, params)


async def lock_health(conn: AsyncConn, endpoint_ids: list[str]) -> list[HealthRow]:
    """Lock these endpoints' rows, in id order, and return their stored health."""
    return await amany(conn, HealthRow, queries.HEALTH_LOCK, {"ids": endpoint_ids})


async def write_health(conn: AsyncConn, rows: list[dict[str, Any]]) -> None:
    """Write endpoints' new health (`queries.HEALTH_WRITE` rows)."""
    await arun(conn, queries.HEALTH_WRITE, {"rows": Jsonb(rows)})


async def unpark(conn: AsyncConn, endpoint_ids: list[str]) -> None:
    """Make the deliveries parked behind these endpoints' circuits due now."""
    await arun(conn, queries.UNPARK, {"ids": endpoint_ids})


async def disable(conn: AsyncConn, endpoint_id: str, reason: str) -> Disabled | None:
    """Disable an endpoint and dead-letter its pending deliveries; None if it is gone."""
    params = {"id": endpoint_id, "tenant": None, "reason": reason}
    return await aone(conn, Disabled, queries.DISABLE_ENDPOINT, params)


async def count_rates(conn: AsyncConn, second: int, added: dict[str, int]) -> dict[str, int]:
    """Add ``added`` attempts per endpoint to ``second``'s counts; return each new count."""
    params = {"second": second, "endpoints": list(added), "added": list(added.values())}
    return {
        r.endpoint_id: int(r.count) for r in await amany(conn, _Count, queries.RATE_COUNT, params)
    }


async def prune_rates(conn: AsyncConn, before: int) -> None:
    """Forget rate counts of seconds before ``before``."""
    await arun(conn, queries.RATE_PRUNE, {"before": before})
