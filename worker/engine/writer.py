"""The engine's batched writer: every attempt and release recorded.

Writes are group commits: whatever finished while the previous statement ran goes into the
next one, so nothing waits at low load and a statement carries hundreds of rows at high
load. Every finished attempt is recorded with its delivery's new state in one statement
(`worker.store.engine.record`), every release in another (`release`). A batch that failed or
opened a circuit folds its outcomes into the endpoints' health in the record's own
transaction (`worker.engine.health`); endpoints a settlement gives up on are disabled there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from psycopg import AsyncConnection

from worker.delivery.attempt import Finished, iso, log_fields, log_level, record_params, settle
from worker.engine import health
from worker.engine.database import Database
from worker.engine.observer import Observer
from worker.policy import breaker, plan
from worker.settings import Settings
from worker.store import engine as store

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
        adopt: Callable[[list[tuple[int, str]]], None],
    ) -> None:
        self._db = db
        self._settings = settings
        self._policy = policy
        self._observer = observer
        self._lock_seconds = lock_seconds
        self._spawn = spawn
        self._done = done  # told how many deliveries each batch handed back
        self._adopt = adopt  # given the deliveries a batch woke, in the finished ones' slots
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
        self,
        write: Callable[[Sequence[B]], Awaitable[list[tuple[int, str]]]],
        batch: Sequence[B],
    ) -> None:
        adopted = 0
        try:
            woken = await write(batch)
            if woken:
                self._adopt(woken)
                adopted = len(woken)
        except Exception:
            # The claims' locks run out and the scheduler takes the deliveries up again.
            log.exception("could not write %d deliveries back; they will be retried", len(batch))
        finally:
            self._done(len(batch) - adopted)

    async def _wake_next(self, finished: list[int]) -> list[tuple[int, str]]:
        """Wake the next delivery of each ordering key that just finished, for the engine to
        take over. Lost with the process, they go when their lease ends."""
        lease = self._settings.relay_lease

        async def wake(conn: AsyncConnection[Any]) -> list[store.Woken]:
            return await store.order_next(conn, finished, lease)

        try:
            woken = await self._db.run(wake, self._lock_seconds)
        except Exception:
            log.exception("could not wake the next deliveries of %d ordering keys", len(finished))
            return []
        return [(w.id, w.message_id) for w in woken]

    async def _write_releases(
        self, batch: Sequence[tuple[plan.Claimed, plan.Release]]
    ) -> list[tuple[int, str]]:
        """Write a batch of releases; return the deliveries woken behind those it killed."""
        rows = [
            {
                "id": job.id,
                "next": iso(release.next_attempt_at),
                "status": "dead" if release.dead_reason else "pending",
                "dead_reason": release.dead_reason,
                "wait": release.circuit_wait,
                "order_wait": release.order_wait,
            }
            for job, release in batch
        ]
        ids = [job.id for job, _ in batch]
        moved = await self._db.run(lambda conn: store.release(conn, rows, ids), self._lock_seconds)
        for job, release in batch:
            if release.dead_reason and job.id in moved:
                if release.dead_reason == "tenant_mismatch":
                    log.error("delivery crosses tenants", extra={"delivery_id": job.id})
                log.warning("delivery dead", extra=log_fields(job, reason=release.dead_reason))
        killed = [
            job.id
            for job, release in batch
            if release.dead_reason and job.ordering_key is not None and job.id in moved
        ]
        return await self._wake_next(killed) if killed else []

    async def _write_attempts(self, batch: Sequence[Finished]) -> list[tuple[int, str]]:
        """Record a batch of attempts; return the deliveries woken behind those it finished
        (in the same statement: one round trip per hop of an ordering key)."""
        now = datetime.now(UTC)
        settled = [settle(f, self._settings, now) for f in batch]
        reset, folded = health.split(batch)
        params = record_params(batch, settled, reset, self._settings.relay_lease)

        async def record(
            conn: AsyncConnection[Any],
        ) -> tuple[list[store.Recorded], list[health.Change]]:
            if not folded:  # the common case: one statement, its own transaction
                return await store.record(conn, params), []
            async with conn.transaction():
                recorded = await store.record(conn, params)
                changes = await health.fold(
                    conn, folded, now, self._policy, self._settings.operations_tenant
                )
            return recorded, changes

        recorded, changes = await self._db.run(record, self._lock_seconds)
        was = {row.id: row.was for row in recorded if row.message_id is None}
        woken = [(row.id, row.message_id) for row in recorded if row.message_id is not None]
        disable = self._report(batch, settled, was, now)
        for change in changes:
            change.log()
        for endpoint_id, reason in disable.items():
            self._spawn(
                health.disable(
                    self._db,
                    endpoint_id,
                    reason,
                    self._settings.operations_tenant,
                    self._lock_seconds,
                )
            )
        return woken

    def _report(
        self,
        batch: Sequence[Finished],
        settled: Sequence[plan.Settlement],
        was: Mapping[int, str],
        now: datetime,
    ) -> dict[str, str]:
        """Count and log the recorded attempts; return the endpoints to disable, and why.

        One INFO line per batch (``recorded batch``) counts the attempts by action; each
        attempt that did not succeed has a line of its own (INFO, or WARNING when someone
        must act: `log_level`), each success one at DEBUG only (WEBHOOKS_LOG_LEVEL=debug).
        A line per success was a twentieth of a worker's CPU at full load.
        """
        disable: dict[str, str] = {}
        actions: dict[str, int] = {}
        each_success = log.isEnabledFor(logging.DEBUG)
        attempt = self._observer.attempt
        for f, s in zip(batch, settled, strict=True):
            outcome = f.outcome
            attempt(outcome.kind.value, f.duration)
            action = s.decision.action
            actions[action] = actions.get(action, 0) + 1
            if s.disable_reason:
                disable.setdefault(f.job.endpoint_id, s.disable_reason)
            if s.status == "succeeded":
                # Only the attempt that moved the delivery out of pending counts it as
                # finished (a concurrent disable may have killed it meanwhile).
                if was.get(f.job.id) == "pending":
                    self._observer.succeeded((now - f.job.event_created_at).total_seconds())
                if not each_success:
                    continue
                level = logging.DEBUG
            else:
                level = log_level(outcome, s.status)
            log.log(
                level,
                "delivery %s",
                action,
                extra=log_fields(
                    f.job,
                    attempt=f.job.attempts + 1,
                    status=outcome.status_code,
                    outcome=outcome.kind.value,
                    error=outcome.error,
                    duration=round(f.duration, 4),
                    reason=s.decision.reason if s.status == "dead" else None,
                ),
            )
        log.info("recorded batch", extra={"attempts": len(batch), **actions})
        return disable
