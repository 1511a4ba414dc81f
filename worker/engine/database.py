"""The engine's Postgres: a small pool, each call one statement retried through outages.

The pool (built by `worker.app.App.engine`) holds at most three connections (claims, writes,
endpoint disables), whatever the engine's concurrency: claims and writes are group commits,
a statement per batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from worker.outages import Outage, retrying_for

__all__ = ["Database"]

T = TypeVar("T")


class Database:
    """Run the engine's store functions (`worker.store.engine`) on a pool, retried."""

    def __init__(self, pool: AsyncConnectionPool[Any], outage: Outage) -> None:
        self.outage = outage
        self.pool = pool

    async def run(self, work: Callable[[AsyncConnection[Any]], Awaitable[T]], patience: float) -> T:
        """Run `work` on a pooled connection; retry it for up to `patience` seconds."""
        async for attempt in retrying_for(self.outage, patience):
            with attempt:
                async with self.pool.connection() as conn:
                    result = await work(conn)
        self.outage.recovered()
        return result
