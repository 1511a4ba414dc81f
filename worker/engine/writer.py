"""The engine's batched writer: every attempt and release, and endpoint health, recorded.

Writes are group commits: whatever finished while the previous statement ran goes into the
next one, so nothing waits at low load and a statement carries hundreds of rows at high
load. Every finished attempt is recorded with its delivery's new state in one statement
(`queries.RECORD`), every release in another (`queries.RELEASE`). A batch that failed or
opened a circuit folds its outcomes into the endpoints' health under their row locks, in
the record's own transaction (`breaker.fold_health`), and announces what changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from producers import apublish
from worker.delivery.attempt import Finished, iso, log_fields, log_level, record_row
from worker.engine.database import Database, Row
from worker.engine.observer import Observer
from worker.policy import breaker, operations, plan
from worker.policy.outcome import Kind
from worker.settings import Settings
from worker.store import queries

__all__ = ["MAX_BATCH", "Writer"]

log = logging.getLogger("webhooks.worker")
B = TypeVar("B")

#: Rows one claim or record statement carries at most.
MAX_BATCH = 500


class Writer:
    """Record what the engine finished or put back, a batch per statement, on its loop."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        policy: breaker.CircuitPolicy,
        observer: Observer,
        *,
        lock_seconds: float,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        done: Callable[[int], None],
    ) -> None:
        self._db = db
        self._settings = settings
        self._policy = policy
        self._observer = observer
        self._lock_seconds = lock_seconds
        self._spawn = spawn
        self._done = done  # told how many deliveries each batch handed back
        self._finished: list[Finished] = []
        self._releases: list[tuple[plan.Claimed, plan.Release]] = []
        self._wake: asyncio.Event | None = None

    def open(self) -> None:
        """Prepare to run on the engine's loop (call from the loop, before `run`)."""
        self._wake = asyncio.Event()

    def release(self, job: plan.Claimed, release: plan.Release) -> None:
        """Queue a delivery put back or killed without an attempt."""
        self._releases.append((job, release))
        self._wake_up()

    def finished(self, attempt: Finished) -> None:
        """Queue an attempt that ended."""
        self._finished.append(attempt)
        self._wake_up()

    def _wake_up(self) -> None:
        assert self._wake is not None
        self._wake.set()

    async def run(self) -> None:
        """Write whatever is queued, batch after batch, until cancelled."""
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._releases or self._finished:
                if self._releases:
                    releases = self._releases[:MAX_BATCH]
                    del self._releases[:MAX_BATCH]
                    await self._guarded(self._write_releases, releases)
                if self._finished:
                    finished = self._finished[:MAX_BATCH]
                    del self._finished[:MAX_BATCH]
                    await self._guarded(self._write_attempts, finished)

    async def _guarded(
        self, write: Callable[[Sequence[B]], Awaitable[None]], batch: Sequence[B]
    ) -> None:
        try:
            await write(batch)
        except Exception:
            # The claims' locks run out and the scheduler takes the deliveries up again.
            log.exception("could not write %d deliveries back; they will be retried", len(batch))
        finally:
            self._done(len(batch))

    async def _write_releases(self, batch: Sequence[tuple[plan.Claimed, plan.Release]]) -> None:
        rows = [
            {
                "id": job.id,
                "next": iso(release.next_attempt_at),
                "status": "dead" if release.dead_reason else "pending",
                "dead_reason": release.dead_reason,
                "wait": release.circuit_wait,
            }
            for job, release in batch
        ]
        released = await self._db.execute(
            queries.RELEASE,
            {"rows": Jsonb(rows), "ids": [job.id for job, _ in batch]},
            self._lock_seconds,
        )
        moved = {row["id"] for row in released}
        for job, release in batch:
            if release.dead_reason and job.id in moved:
                if release.dead_reason == "tenant_mismatch":
                    log.error("delivery crosses tenants", extra={"delivery_id": job.id})
                log.warning("delivery dead", extra=log_fields(job, reason=release.dead_reason))

    async def _write_attempts(self, batch: Sequence[Finished]) -> None:
        now = datetime.now(UTC)
        settings = self._settings
        settled = [
            plan.settle(
                f.job,
                f.outcome,
                now,
                schedule=settings.retry_schedule,
                max_age=settings.max_delivery_age,
                disable_after=settings.disable_after,
            )
            for f in batch
        ]
        reset, folded = _health_groups(batch)
        params = {
            "rows": Jsonb([record_row(f, s) for f, s in zip(batch, settled, strict=True)]),
            "ids": [f.job.id for f in batch],
            "reset": reset,
        }

        async def record(conn: AsyncConnection[Any]) -> tuple[list[Row], list[_Change]]:
            if not folded:  # the common case: one statement, its own transaction
                cursor = await conn.execute(queries.RECORD, params)
                return await cursor.fetchall(), []
            async with conn.transaction():
                cursor = await conn.execute(queries.RECORD, params)
                recorded = await cursor.fetchall()
                changes = await self._fold_health(conn, folded, now)
            return recorded, changes

        recorded, changes = await self._db.run(record, self._lock_seconds)
        was = {row["id"]: row["was"] for row in recorded}
        disable = self._report(batch, settled, was, now)
        for change in changes:
            change.log()
        for endpoint_id, reason in disable.items():
            self._spawn(self._disable(endpoint_id, reason))

    def _report(
        self,
        batch: Sequence[Finished],
        settled: Sequence[plan.Settlement],
        was: Mapping[int, str],
        now: datetime,
    ) -> dict[str, str]:
        """Count and log each recorded attempt; return the endpoints to disable, and why."""
        disable: dict[str, str] = {}
        for f, s in zip(batch, settled, strict=True):
            self._observer.attempt(f.outcome.kind.value, f.duration)
            # Only the attempt that moved the delivery out of pending counts it as finished
            # (a concurrent disable may have killed it meanwhile).
            if was.get(f.job.id) == "pending" and s.status == "succeeded":
                self._observer.succeeded((now - f.job.event_created_at).total_seconds())
            log.log(
                log_level(f.outcome, s.status),
                "delivery %s",
                s.decision.action,
                extra=log_fields(
                    f.job,
                    attempt=f.job.attempts + 1,
                    status=f.outcome.status_code,
                    outcome=f.outcome.kind.value,
                    error=f.outcome.error,
                    duration=round(f.duration, 4),
                    reason=s.decision.reason if s.status == "dead" else None,
                ),
            )
            if s.disable_reason:
                disable.setdefault(f.job.endpoint_id, s.disable_reason)
        return disable

    async def _fold_health(
        self,
        conn: AsyncConnection[Any],
        results: Mapping[str, list[tuple[int, Kind]]],
        now: datetime,
    ) -> list[_Change]:
        """Fold the batch into each endpoint's stored health, in the record's transaction."""
        cursor = await conn.execute(queries.HEALTH_LOCK, {"ids": list(results)})
        changes = []
        for row in await cursor.fetchall():
            endpoint = _Endpoint.from_row(row)
            change = breaker.fold_health(endpoint.health, results[endpoint.id], now, self._policy)
            if change.health != endpoint.health:
                changes.append(_Change(endpoint, change))
        if not changes:
            return []
        await conn.execute(
            queries.HEALTH_WRITE,
            {"rows": Jsonb([_health_row(c.endpoint.id, c.change.health) for c in changes])},
        )
        closed = [c.endpoint.id for c in changes if c.change.closed]
        if closed:
            await conn.execute(queries.UNPARK, {"ids": closed})
        ops_tenant = self._settings.operations_tenant
        for c in changes:
            if operations.concerns(c.endpoint.tenant_id, ops_tenant):
                for event in c.announcements():
                    await _announce(conn, event, ops_tenant)
        return changes

    async def _disable(self, endpoint_id: str, reason: str) -> None:
        """Disable an endpoint; its pending deliveries become dead letters."""
        ops_tenant = self._settings.operations_tenant

        async def disable(conn: AsyncConnection[Any]) -> Row | None:
            async with conn.transaction():
                cursor = await conn.execute(
                    queries.DISABLE_ENDPOINT, {"id": endpoint_id, "tenant": None, "reason": reason}
                )
                row: Row | None = await cursor.fetchone()
                if row is not None and operations.concerns(row["tenant_id"], ops_tenant):
                    event = operations.endpoint_disabled(row, reason, int(row["dead_lettered"]))
                    await _announce(conn, event, ops_tenant)
            return row

        try:
            row = await self._db.run(disable, self._lock_seconds)
        except Exception:
            log.exception("could not disable endpoint %s", endpoint_id)
            return
        moved = int(row["dead_lettered"]) if row else 0
        log.warning(
            "endpoint disabled",
            extra={"endpoint_id": endpoint_id, "reason": reason, "dead_lettered": moved},
        )


def _health_groups(
    batch: Sequence[Finished],
) -> tuple[list[str], dict[str, list[tuple[int, Kind]]]]:
    """Return the endpoints whose failures a success resets, and those folded under lock.

    Endpoints that only succeeded and looked healthy: one cheap reset in RECORD. Any other:
    folded under the endpoint's row lock (`breaker.fold_health`).
    """
    by_endpoint: dict[str, list[Finished]] = {}
    for f in batch:
        by_endpoint.setdefault(f.job.endpoint_id, []).append(f)
    reset: list[str] = []
    folded: dict[str, list[tuple[int, Kind]]] = {}
    for endpoint_id, group in by_endpoint.items():
        if any(breaker.needs_health(f.job, [f.outcome.kind]) for f in group):
            folded[endpoint_id] = [(f.job.id, f.outcome.kind) for f in group]
        elif any(f.outcome.kind is Kind.SUCCEEDED for f in group):
            reset.append(endpoint_id)
    return reset, folded


@dataclass(frozen=True)
class _Endpoint:
    """An endpoint's health, locked for a batch (one row of `queries.HEALTH_LOCK`)."""

    id: str
    tenant_id: str
    url: str
    health: breaker.Health

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> _Endpoint:
        health = breaker.Health(
            row["consecutive_failures"],
            row["failing_since"],
            row["circuit_open_until"],
            row["circuit_cooldown"],
            row["circuit_probe_id"],
            row["circuit_probe_until"],
        )
        return cls(row["id"], row["tenant_id"], row["url"], health)

    def named(self) -> dict[str, str]:
        """Return what an operational event says of the endpoint (`operations`)."""
        return {"id": self.id, "tenant_id": self.tenant_id, "url": self.url}


@dataclass(frozen=True)
class _Change:
    """An endpoint whose health a batch changed, for its log lines and events."""

    endpoint: _Endpoint
    change: breaker.HealthChange

    def announcements(self) -> list[operations.Announcement]:
        out = []
        before, health = self.endpoint.health, self.change.health
        if self.change.opened:
            out.append(
                operations.circuit_opened(
                    self.endpoint.named(), health.consecutive_failures, health.circuit_open_until
                )
            )
        if self.change.recovered:
            out.append(
                operations.recovered(
                    self.endpoint.named(), before.consecutive_failures, before.is_open
                )
            )
        return out

    def log(self) -> None:
        health = self.change.health
        extra = {
            "endpoint_id": self.endpoint.id,
            "consecutive_failures": health.consecutive_failures,
            "probe_at": iso(health.circuit_open_until),
        }
        if self.change.opened:
            log.warning("circuit opened", extra=extra)
        elif self.change.probe_failed:
            log.warning("circuit probe failed; circuit stays open", extra=extra)
        if self.change.closed:
            log.info(
                "circuit closed",
                extra={**extra, "failures_before": self.endpoint.health.consecutive_failures},
            )


async def _announce(
    conn: AsyncConnection[Any], event: operations.Announcement, tenant: str
) -> None:
    """Publish an operational event in the caller's transaction, if anyone subscribes."""
    cursor = await conn.execute(queries.SUBSCRIBED, {"tenant": tenant, "type": event.event_type})
    if await cursor.fetchone():
        await apublish(
            conn,
            event.event_type,
            event.payload,
            tenant_id=tenant,
            max_payload_bytes=operations.MAX_PAYLOAD_BYTES,
        )


def _health_row(endpoint_id: str, health: breaker.Health) -> dict[str, Any]:
    return {
        "id": endpoint_id,
        "consecutive_failures": health.consecutive_failures,
        "failing_since": iso(health.failing_since),
        "circuit_open_until": iso(health.circuit_open_until),
        "circuit_cooldown": health.circuit_cooldown,
        "circuit_probe_id": health.circuit_probe_id,
        "circuit_probe_until": iso(health.circuit_probe_until),
    }
