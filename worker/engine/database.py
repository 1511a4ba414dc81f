"""The engine's Postgres: a small pool, each call one statement retried through outages.

The pool (built by `worker.app.App.engine`) holds at most three connections (claims, writes,
endpoint disables), whatever the engine's concurrency: claims and writes are group commits,
a statement per batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from worker.outages import Outage, retrying_for

__all__ = ["Database", "Row"]

T = TypeVar("T")
#: A row as the pool's connections return it (`dict_row`).
Row = dict[str, Any]


class Database:
    """Run the engine's statements on a pool of autocommit connections returning dict rows."""

    def __init__(self, pool: AsyncConnectionPool[Any], outage: Outage) -> None:
        self.outage = outage
        self.pool = pool

    async def execute(self, sql: str, params: Mapping[str, Any], patience: float) -> list[Row]:
        """Run one statement and return its rows; retry it for up to `patience` seconds."""

        async def one(conn: AsyncConnection[Any]) -> list[Row]:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

        return await self.run(one, patience)

    async def run(self, work: Callable[[AsyncConnection[Any]], Awaitable[T]], patience: float) -> T:
        """Run `work` on a pooled connection; retry it through short outages."""
        async for attempt in retrying_for(self.outage, patience):
            with attempt:
                async with self.pool.connection() as conn:
                    result = await work(conn)
        self.outage.recovered()
        return result
