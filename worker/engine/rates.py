"""Per-endpoint rate limits: count each attempt, and say how long one over its limit waits.

A fixed one-second window shared by every worker process: counted in Redis when the queue
is in Redis, else in Postgres (a RabbitMQ deployment runs no Redis at all). Soft state:
losing it only loosens the limit for a second.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Sequence

import redis

from worker.engine.database import Database
from worker.outages import TRANSIENT
from worker.policy import plan
from worker.store import engine as store

__all__ = ["RateLimits", "rate_waits", "waits_over_limit"]

#: Failures of the rate limiter's store (Redis, or Postgres on RabbitMQ deployments).
_RATE_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError, *TRANSIENT)


class RateLimits:
    """Count a batch of attempts against their endpoints' limits, in Redis or Postgres."""

    def __init__(self, client: redis.Redis | None, db: Database) -> None:
        self.redis = client
        self._db = db
        self._pruned = 0.0

    async def waits(self, jobs: Sequence[plan.Claimed]) -> dict[int, float]:
        """Count each job against its endpoint's per-second limit, in one round trip."""
        if not jobs:
            return {}
        try:
            if self.redis is not None:
                return await asyncio.to_thread(rate_waits, self.redis, jobs, time.time())
            return await self._postgres(jobs, time.time())
        except _RATE_ERRORS as exc:
            # The limit cannot be checked: wait a little rather than exceed it.
            self._db.outage.failed(exc)
            return {job.id: 1.0 + random.uniform(0, 1) for job in jobs}

    async def _postgres(self, jobs: Sequence[plan.Claimed], now: float) -> dict[int, float]:
        """Count jobs in `webhooks.rate_counts`, one statement per batch (no Redis)."""
        second = int(now)
        added: dict[str, int] = {}
        for job in jobs:
            added[job.endpoint_id] = added.get(job.endpoint_id, 0) + 1
        async with self._db.pool.connection() as conn:
            counted = await store.count_rates(conn, second, added)
            if now - self._pruned > 10:
                self._pruned = now
                await store.prune_rates(conn, second - 2)
        # Number this batch's jobs after whatever other processes counted this second.
        nxt = {endpoint_id: count - added[endpoint_id] for endpoint_id, count in counted.items()}
        counts = []
        for job in jobs:
            nxt[job.endpoint_id] += 1
            counts.append(nxt[job.endpoint_id])
        return waits_over_limit(jobs, counts, now)


def rate_waits(client: redis.Redis, jobs: Iterable[plan.Claimed], now: float) -> dict[int, float]:
    """Count jobs against their endpoints' limits in Redis; return the wait of each one over."""
    jobs = list(jobs)
    second = int(now)
    pipe = client.pipeline(transaction=False)
    for job in jobs:
        key = f"webhooks:ratelimit:{job.endpoint_id}:{second}"
        pipe.incr(key)
        pipe.expire(key, 2)
    return waits_over_limit(jobs, [int(c) for c in pipe.execute()[::2]], now)


def waits_over_limit(
    jobs: Sequence[plan.Claimed], counts: Sequence[int], now: float
) -> dict[int, float]:
    """Return the wait of each job whose count this second is over its endpoint's limit."""
    second = int(now)
    waits: dict[int, float] = {}
    for job, count in zip(jobs, counts, strict=True):
        limit = int(job.rate_limit or 0)
        if int(count) > limit:
            # Come back roughly when this request's turn in the line arrives.
            waits[job.id] = (
                (second + 1 - now) + (int(count) - limit - 1) / limit + random.uniform(0, 0.1)
            )
    return waits
