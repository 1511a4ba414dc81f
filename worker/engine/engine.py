"""The delivery engine: hundreds of attempts in flight per process on one event loop.

Dramatiq's threads only hand messages over (`Engine.submit`, which blocks while the engine
is full). On the engine's own thread an asyncio loop then, for whatever has arrived:

1. claims every named delivery in one statement (`queries.CLAIM`),
2. kills or defers what must not be sent (`plan.admit`, the gates, `plan.defer`),
3. sends the rest concurrently (`http.Sender`), each within its deadline,
4. records every finished attempt with its delivery's new state in one statement
   (`queries.RECORD`), and every release in another (`queries.RELEASE`).

Claims and writes are group commits: whatever arrived or finished while the previous
statement ran goes into the next one, so nothing waits at low load and a statement carries
hundreds of rows at high load. No transaction is open during a request. The Postgres pool
holds at most three connections (claims, writes, endpoint disables), whatever the
concurrency.

A worker killed mid-batch loses nothing: its messages were acknowledged when handed over,
so every delivery it held is still `pending` in Postgres with a lease (the relay's, or the
claim's lock), and the scheduler enqueues it again once that lease runs out (guarantee 3).
A request that reached the receiver before the kill is sent again: at least once, same
`webhook-id` (guarantee 5).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import redis
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from producers import apublish
from worker.engine.http import Sender, classify_failure
from worker.engine.request import (
    MAX_RESPONSE_BYTES,
    USER_AGENT,
    envelope,
    request_headers,
    valid_keys,
)
from worker.errors import ConfigError
from worker.outages import TRANSIENT, Outage
from worker.policy import operations, plan
from worker.policy.breaker import InFlightLimiter
from worker.policy.outcome import Kind, Outcome, classify_response
from worker.policy.signing import signature_header
from worker.settings import Settings
from worker.store import queries
from worker.store.vault import Vault

__all__ = [
    "DEFAULT_CONCURRENCY",
    "Engine",
    "Finished",
    "Observer",
    "record_row",
    "send_attempt",
]

log = logging.getLogger("webhooks.worker")
T = TypeVar("T")

#: Requests in flight per process by default: ~1,000 deliveries/s per process at 250 ms.
DEFAULT_CONCURRENCY = 256
#: Rows one claim or record statement carries at most.
MAX_BATCH = 500
#: Seconds a claim outlives the attempt's deadline, for recording the result (a group
#: commit of a few milliseconds; seconds under load). It bounds how soon a delivery held by
#: a killed worker is attempted again (request timeout + margin, ~35 s by default); a
#: record later than this lets another worker attempt the delivery again: at least once,
#: same webhook-id (guarantee 5).
LOCK_MARGIN = 5.0
#: An endpoint whose attempts take longer than this on average (or that has not answered
#: yet) may hold at most half of a process's slots, so it cannot starve the others.
SLOW_SECONDS = 2.0
#: Failures of the rate limiter's store (Redis, or Postgres on RabbitMQ deployments).
_RATE_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError, *TRANSIENT)
#: Seconds a claim statement is retried through a Postgres outage before its deliveries are
#: left to their leases.
CLAIM_PATIENCE = 10.0


class Observer(Protocol):
    """Receive what happens to deliveries (metrics implement it)."""

    def attempt(self, outcome: str, seconds: float) -> None: ...
    def succeeded(self, latency: float) -> None: ...
    def held(self, count: int, capacity: int) -> None: ...
    def secret_failed(self) -> None: ...


class _Quiet:
    def attempt(self, outcome: str, seconds: float) -> None:
        pass

    def succeeded(self, latency: float) -> None:
        pass

    def held(self, count: int, capacity: int) -> None:
        pass

    def secret_failed(self) -> None:
        pass


@dataclass(frozen=True)
class Finished:
    """One attempt that ended, waiting to be recorded."""

    job: plan.Claimed
    outcome: Outcome
    body: bytes
    started_at: datetime
    duration: float


class Engine:
    """Claim, send and record deliveries for one worker process; thread-safe `submit`."""

    def __init__(
        self,
        settings: Settings,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        redis_client: redis.Redis | None = None,
        sender: Sender | None = None,
        vault: Vault | None = None,
        observer: Observer | None = None,
        application_name: str = "webhooks-worker",
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.settings = settings
        self.concurrency = concurrency
        # The per-endpoint rate limit is counted where the broker is: Redis when the queue is
        # in Redis, else Postgres (a RabbitMQ deployment runs no Redis at all).
        self.redis: redis.Redis | None = None
        if redis_client is not None:
            self.redis = redis_client
        elif settings.broker_is_redis:
            self.redis = redis.Redis.from_url(settings.broker_url, socket_timeout=10)
        self._rate_pruned = 0.0
        self.sender = sender or Sender(
            allowed_networks=settings.allowed_networks,
            connect_timeout=settings.connect_timeout,
            request_timeout=settings.request_timeout,
            user_agent=USER_AGENT,
            max_connections=concurrency,
        )
        self.vault = vault or Vault(settings.secret_key)
        self.policy = plan.CircuitPolicy(
            settings.circuit_failures, settings.circuit_cooldown, settings.circuit_max_cooldown
        )
        self.busy = InFlightLimiter(max(1, concurrency // 2))
        self.observer: Observer = observer or _Quiet()
        self.outage = Outage("Postgres or Redis", log)
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.require_database_url(),
            min_size=1,
            max_size=3,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                # Shown in pg_stat_activity unless the DSN names the application itself.
                "fallback_application_name": application_name,
            },
            open=False,
            name=application_name,
            timeout=10.0,
        )
        self._lock_seconds = settings.request_timeout + LOCK_MARGIN
        self._slots = threading.Semaphore(concurrency)
        self._held = 0  # submitted and not yet written; touched on the loop only
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._closed = False
        self._inbox: list[tuple[int, str]] = []  # filled by Dramatiq's threads
        self._inbox_lock = threading.Lock()
        self._inbox_woken = False
        self._arrived: list[tuple[int, str]] = []  # taken over by the loop
        self._finished: list[Finished] = []
        self._releases: list[tuple[plan.Claimed, plan.Release]] = []
        self._latency: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._claim_wake: asyncio.Event | None = None
        self._write_wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None

    # -- lifecycle (any thread) -------------------------------------------------------------

    def start(self) -> None:
        """Start the engine's thread and loop; idempotent."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="webhooks-engine", daemon=True)
        self._thread.start()
        self._started.wait()

    def submit(self, delivery_id: int, message_id: str) -> None:
        """Hand over the delivery a message names; block while `concurrency` are held."""
        if self._closed:
            raise RuntimeError("the delivery engine is closed")
        self._slots.acquire()
        # One loop wake-up per burst, not per message: the loop takes the whole inbox.
        with self._inbox_lock:
            self._inbox.append((delivery_id, message_id))
            if self._inbox_woken:
                return
            self._inbox_woken = True
        self._loop.call_soon_threadsafe(self._accept)

    def held(self) -> int:
        """Return how many deliveries were handed over and are not yet written back."""
        return self._held

    def close(self, timeout: float | None = None) -> None:
        """Finish what was handed over (up to `timeout` seconds), then stop the loop."""
        if self._closed or self._thread is None:
            self._closed = True
            return
        self._closed = True
        # Attempts end by their deadline; recording them takes a moment more.
        wait = self.settings.request_timeout + 10 if timeout is None else timeout
        future = asyncio.run_coroutine_threadsafe(self._shutdown(wait), self._loop)
        try:
            future.result(wait + 15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._boot())
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    async def _boot(self) -> None:
        self._claim_wake = asyncio.Event()
        self._write_wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.observer.held(0, self.concurrency)
        await self.pool.open(wait=False)
        self._spawn(self._claimer())
        self._spawn(self._writer())

    async def _shutdown(self, timeout: float) -> None:
        assert self._idle is not None
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning(
                "stopping with %d deliveries unfinished; their leases bring them back",
                self._held,
            )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sender.close()
        await self.pool.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _accept(self) -> None:
        assert self._claim_wake is not None and self._idle is not None
        with self._inbox_lock:
            arrived, self._inbox = self._inbox, []
            self._inbox_woken = False
        self._held += len(arrived)
        self.observer.held(self._held, self.concurrency)
        self._idle.clear()
        self._arrived.extend(arrived)
        self._claim_wake.set()

    def _done(self, count: int) -> None:
        assert self._idle is not None
        self._held -= count
        self.observer.held(self._held, self.concurrency)
        for _ in range(count):
            self._slots.release()
        if self._held == 0:
            self._idle.set()

    # -- Postgres, each call one statement, retried through short outages ------------------

    async def _execute(
        self, sql: str, params: Mapping[str, Any], patience: float
    ) -> list[dict[str, Any]]:
        async def one(conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

        return await self._with_conn(one, patience)

    async def _with_conn(
        self, work: Callable[[AsyncConnection[Any]], Awaitable[T]], patience: float
    ) -> T:
        """Run `work` on a pooled connection; retry it through short outages."""
        give_up = time.monotonic() + patience
        delay = 0.1
        while True:
            try:
                async with self.pool.connection() as conn:
                    result = await work(conn)
                self.outage.recovered()
                return result
            except TRANSIENT as exc:
                self.outage.failed(exc)
                if time.monotonic() + delay > give_up:
                    raise
            await asyncio.sleep(delay + random.uniform(0, delay / 2))
            delay = min(delay * 2, 5.0)

    # -- claim, admit, gate ------------------------------------------------------------------

    async def _claimer(self) -> None:
        assert self._claim_wake is not None
        while True:
            await self._claim_wake.wait()
            self._claim_wake.clear()
            while self._arrived:
                batch = self._arrived[:MAX_BATCH]
                del self._arrived[:MAX_BATCH]
                try:
                    rows = await self._execute(
                        queries.CLAIM,
                        {
                            "ids": [d for d, _ in batch],
                            "message_ids": [m for _, m in batch],
                            "lock": self._lock_seconds,
                        },
                        CLAIM_PATIENCE,
                    )
                except Exception:
                    log.exception(
                        "could not claim %d deliveries; their leases bring them back", len(batch)
                    )
                    self._done(len(batch))
                    continue
                # Done, dead, held by another worker, or a stale or duplicate message.
                self._done(len(batch) - len(rows))
                await self._dispatch([plan.Claimed.from_row(row) for row in rows])

    async def _dispatch(self, jobs: Sequence[plan.Claimed]) -> None:
        """Send each claimed job, or put it back: every job ends in one attempt or release."""
        now = datetime.now(UTC)
        max_age = self.settings.max_delivery_age
        admitted: list[plan.Claimed] = []
        for job in jobs:
            release = plan.admit(job, now, max_age)
            if release is None and self.policy.failures and not plan.circuit_allows(job, now):
                release = plan.park(job, max_age)
            if release is not None:
                self._release(job, release)
            else:
                admitted.append(job)
        rate_waits = await self._rate_waits([job for job in admitted if job.rate_limit])
        for job in admitted:
            wait, slot = self._gate(job, rate_waits.get(job.id))
            if wait is not None:
                self._release(job, plan.defer(job, now, wait, max_age))
            else:
                self._spawn(self._attempt(job, slot))

    def _gate(self, job: plan.Claimed, rate_wait: float | None) -> tuple[float | None, bool]:
        """Return (seconds to wait or None, whether a slow-endpoint slot was taken)."""
        if rate_wait is not None:
            return rate_wait, False
        if self._is_slow(job.endpoint_id):
            if not self.busy.try_acquire(job.endpoint_id):
                return 1.0 + random.uniform(0, 1), False
            return None, True
        return None, False

    async def _rate_waits(self, jobs: Sequence[plan.Claimed]) -> dict[int, float]:
        """Count each job against its endpoint's per-second limit, in one Redis round trip."""
        if not jobs:
            return {}
        try:
            if self.redis is not None:
                return await asyncio.to_thread(rate_waits, self.redis, jobs, time.time())
            return await self._rate_waits_postgres(jobs, time.time())
        except _RATE_ERRORS as exc:
            # The limit cannot be checked: wait a little rather than exceed it.
            self.outage.failed(exc)
            return {job.id: 1.0 + random.uniform(0, 1) for job in jobs}

    async def _rate_waits_postgres(
        self, jobs: Sequence[plan.Claimed], now: float
    ) -> dict[int, float]:
        """Count jobs in `webhooks.rate_counts`, one statement per batch (no Redis)."""
        second = int(now)
        added: dict[str, int] = {}
        for job in jobs:
            added[job.endpoint_id] = added.get(job.endpoint_id, 0) + 1
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    queries.RATE_COUNT,
                    {
                        "second": second,
                        "endpoints": list(added),
                        "added": list(added.values()),
                    },
                )
            ).fetchall()
            if now - self._rate_pruned > 10:
                self._rate_pruned = now
                await conn.execute(queries.RATE_PRUNE, {"before": second - 2})
        # Number this batch's jobs after whatever other processes counted this second.
        nxt = {r["endpoint_id"]: int(r["count"]) - added[r["endpoint_id"]] for r in rows}
        counts = []
        for job in jobs:
            nxt[job.endpoint_id] += 1
            counts.append(nxt[job.endpoint_id])
        return waits_over_limit(jobs, counts, now)

    def _is_slow(self, endpoint_id: str) -> bool:
        # An endpoint this process has not heard back from yet counts as slow: a burst of
        # first attempts to a receiver that hangs must not take every slot before its first
        # timeout reveals it. A fast endpoint leaves the cap after one answer.
        return self._latency.get(endpoint_id, SLOW_SECONDS + 1) > SLOW_SECONDS

    def _observe_latency(self, endpoint_id: str, seconds: float) -> None:
        old = self._latency.get(endpoint_id)
        self._latency[endpoint_id] = seconds if old is None else 0.7 * old + 0.3 * seconds

    # -- send -------------------------------------------------------------------------------

    async def _attempt(self, job: plan.Claimed, slot: bool) -> None:
        started_at = datetime.now(UTC)
        started = time.monotonic()
        try:
            outcome, body = await self._send(job, started_at)
        finally:
            if slot:
                self.busy.release(job.endpoint_id)
        duration = time.monotonic() - started
        self._observe_latency(job.endpoint_id, duration)
        self._finished.append(Finished(job, outcome, body, started_at, duration))
        self._wake_writer()

    async def _send(self, job: plan.Claimed, now: datetime) -> tuple[Outcome, bytes]:
        outcome, body = await send_attempt(self.sender, self.vault, job, now)
        if outcome.error_kind == "secret":
            # /readyz says why while it lasts.
            self.observer.secret_failed()
        return outcome, body

    # -- write back ---------------------------------------------------------------------------

    def _release(self, job: plan.Claimed, release: plan.Release) -> None:
        self._releases.append((job, release))
        self._wake_writer()

    def _wake_writer(self) -> None:
        assert self._write_wake is not None
        self._write_wake.set()

    async def _writer(self) -> None:
        assert self._write_wake is not None
        while True:
            await self._write_wake.wait()
            self._write_wake.clear()
            while self._releases or self._finished:
                if self._releases:
                    releases = self._releases[:MAX_BATCH]
                    del self._releases[:MAX_BATCH]
                    await self._guarded(self._write_releases, releases)
                if self._finished:
                    finished = self._finished[:MAX_BATCH]
                    del self._finished[:MAX_BATCH]
                    await self._guarded(self._write_attempts, finished)

    async def _guarded(self, write: Callable[[Any], Any], batch: Sequence[Any]) -> None:
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
                "next": _iso(release.next_attempt_at),
                "status": "dead" if release.dead_reason else "pending",
                "dead_reason": release.dead_reason,
                "wait": release.circuit_wait,
            }
            for job, release in batch
        ]
        released = await self._execute(
            queries.RELEASE,
            {"rows": Jsonb(rows), "ids": [job.id for job, _ in batch]},
            self._lock_seconds,
        )
        moved = {row["id"] for row in released}
        for job, release in batch:
            if release.dead_reason and job.id in moved:
                if release.dead_reason == "tenant_mismatch":
                    log.error("delivery crosses tenants", extra={"delivery_id": job.id})
                log.info("delivery dead", extra=_fields(job, reason=release.dead_reason))

    async def _write_attempts(self, batch: Sequence[Finished]) -> None:
        now = datetime.now(UTC)
        settings = self.settings
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
        rows = [record_row(f, s) for f, s in zip(batch, settled, strict=True)]
        by_endpoint: dict[str, list[Finished]] = {}
        for f in batch:
            by_endpoint.setdefault(f.job.endpoint_id, []).append(f)
        # Endpoints that only succeeded and looked healthy: one cheap reset in RECORD.
        # Any other: folded under the endpoint's row lock (plan.fold_health).
        reset, folded = [], {}
        for endpoint_id, group in by_endpoint.items():
            if any(plan.needs_health(f.job, [f.outcome.kind]) for f in group):
                folded[endpoint_id] = [(f.job.id, f.outcome.kind) for f in group]
            elif any(f.outcome.kind is Kind.SUCCEEDED for f in group):
                reset.append(endpoint_id)
        params = {
            "rows": Jsonb(rows),
            "ids": [f.job.id for f in batch],
            "reset": reset,
        }

        async def record(conn: AsyncConnection[Any]) -> tuple[list[dict[str, Any]], list[_Change]]:
            if not folded:  # the common case: one statement, its own transaction
                cursor = await conn.execute(queries.RECORD, params)
                return await cursor.fetchall(), []
            async with conn.transaction():
                cursor = await conn.execute(queries.RECORD, params)
                recorded = await cursor.fetchall()
                changes = await self._fold_health(conn, folded, now)
            return recorded, changes

        recorded, changes = await self._with_conn(record, self._lock_seconds)
        was = {row["id"]: row["was"] for row in recorded}
        disable: dict[str, str] = {}
        for f, s in zip(batch, settled, strict=True):
            self.observer.attempt(f.outcome.kind.value, f.duration)
            # Only the attempt that moved the delivery out of pending counts it as finished
            # (a concurrent disable may have killed it meanwhile).
            if was.get(f.job.id) == "pending" and s.status == "succeeded":
                self.observer.succeeded((now - f.job.event_created_at).total_seconds())
            log.info(
                "delivery %s",
                s.decision.action,
                extra=_fields(
                    f.job,
                    attempt=f.job.attempts + 1,
                    status=f.outcome.status_code,
                    outcome=f.outcome.kind.value,
                    error=f.outcome.error,
                    duration=round(f.duration, 4),
                ),
            )
            if s.disable_reason:
                disable.setdefault(f.job.endpoint_id, s.disable_reason)
        for change in changes:
            change.log()
        for endpoint_id, reason in disable.items():
            self._spawn(self._disable(endpoint_id, reason))

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
            before = _health(row)
            change = plan.fold_health(before, results[row["id"]], now, self.policy)
            if change.health != before:
                changes.append(_Change(row, before, change))
        if not changes:
            return []
        await conn.execute(
            queries.HEALTH_WRITE,
            {"rows": Jsonb([_health_row(c.endpoint["id"], c.change.health) for c in changes])},
        )
        closed = [c.endpoint["id"] for c in changes if c.change.closed]
        if closed:
            await conn.execute(queries.UNPARK, {"ids": closed})
        ops_tenant = self.settings.operations_tenant
        for c in changes:
            if operations.concerns(c.endpoint["tenant_id"], ops_tenant):
                for event in c.announcements():
                    await _announce(conn, event, ops_tenant)
        return changes

    async def _disable(self, endpoint_id: str, reason: str) -> None:
        """Disable an endpoint; its pending deliveries become dead letters."""
        ops_tenant = self.settings.operations_tenant

        async def disable(conn: AsyncConnection[Any]) -> dict[str, Any] | None:
            async with conn.transaction():
                cursor = await conn.execute(
                    queries.DISABLE_ENDPOINT, {"id": endpoint_id, "tenant": None, "reason": reason}
                )
                row = await cursor.fetchone()
                if row is not None and operations.concerns(row["tenant_id"], ops_tenant):
                    event = operations.endpoint_disabled(row, reason, int(row["dead_lettered"]))
                    await _announce(conn, event, ops_tenant)
            return row

        try:
            row = await self._with_conn(disable, self._lock_seconds)
        except Exception:
            log.exception("could not disable endpoint %s", endpoint_id)
            return
        moved = int(row["dead_lettered"]) if row else 0
        log.warning(
            "endpoint disabled",
            extra={"endpoint_id": endpoint_id, "reason": reason, "dead_lettered": moved},
        )


@dataclass(frozen=True)
class _Change:
    """An endpoint whose health a batch changed, for its log lines and events."""

    endpoint: Mapping[str, Any]
    before: plan.Health
    change: plan.HealthChange

    def announcements(self) -> list[operations.Announcement]:
        out = []
        health = self.change.health
        if self.change.opened:
            out.append(
                operations.circuit_opened(
                    self.endpoint, health.consecutive_failures, health.circuit_open_until
                )
            )
        if self.change.recovered:
            out.append(
                operations.recovered(
                    self.endpoint, self.before.consecutive_failures, self.before.is_open
                )
            )
        return out

    def log(self) -> None:
        health = self.change.health
        extra = {
            "endpoint_id": self.endpoint["id"],
            "consecutive_failures": health.consecutive_failures,
            "probe_at": _iso(health.circuit_open_until),
        }
        if self.change.opened:
            log.warning("circuit opened", extra=extra)
        elif self.change.probe_failed:
            log.warning("circuit probe failed; circuit stays open", extra=extra)
        if self.change.closed:
            log.info(
                "circuit closed",
                extra={**extra, "failures_before": self.before.consecutive_failures},
            )


async def _announce(
    conn: AsyncConnection[Any], event: operations.Announcement, tenant: str
) -> None:
    """Publish an operational event in the caller's transaction, if anyone subscribes."""
    cursor = await conn.execute(queries.SUBSCRIBED, {"tenant": tenant, "type": event.event_type})
    if await cursor.fetchone():
        await apublish(conn, event.event_type, event.payload, tenant_id=tenant)


def _health(row: Mapping[str, Any]) -> plan.Health:
    return plan.Health(
        row["consecutive_failures"],
        row["failing_since"],
        row["circuit_open_until"],
        row["circuit_cooldown"],
        row["circuit_probe_id"],
        row["circuit_probe_until"],
    )


def _health_row(endpoint_id: str, health: plan.Health) -> dict[str, Any]:
    return {
        "id": endpoint_id,
        "consecutive_failures": health.consecutive_failures,
        "failing_since": _iso(health.failing_since),
        "circuit_open_until": _iso(health.circuit_open_until),
        "circuit_cooldown": health.circuit_cooldown,
        "circuit_probe_id": health.circuit_probe_id,
        "circuit_probe_until": _iso(health.circuit_probe_until),
    }


async def send_attempt(
    sender: Sender, vault: Vault, job: plan.Claimed, now: datetime
) -> tuple[Outcome, bytes]:
    """Sign and send one claimed delivery; return its outcome and the start of the answer.

    The one path every attempt takes (the engine's, and `webhooks endpoint test`'s): the
    Standard Webhooks body and headers, one signature per valid secret, the sender's
    destination guard, deadline and 16 KiB cap.
    """
    try:
        keys = valid_keys(job.secrets, vault, now)
    except ConfigError as exc:
        # This process's WEBHOOKS_SECRET_KEY cannot open the endpoint's secret: nothing can
        # be signed, so the attempt fails, recorded like any other (guarantee 4).
        return Outcome(Kind.FAILED, None, "secret", f"not signed: {exc}"), b""
    try:
        body = envelope(job.event_type, job.event_created_at, job.payload)
        stamp = int(time.time())
        headers = request_headers(
            job.headers,
            job.event_id,
            stamp,
            signature_header(keys, job.event_id, stamp, body),
        )
        response = await sender.send(job.url, body, headers, max_body=MAX_RESPONSE_BYTES)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # Every way the receiver, the network or the stored endpoint can fail an attempt
        # is classified and recorded; none escapes unrecorded.
        return classify_failure(exc), b""
    outcome = classify_response(response.status_code, response.retry_after, datetime.now(UTC))
    return outcome, response.body


def rate_waits(client: redis.Redis, jobs: Iterable[plan.Claimed], now: float) -> dict[int, float]:
    """Count jobs against their endpoints' limits; return the wait of each one over it.

    A fixed one-second window shared by every worker process through Redis (soft state:
    losing it only loosens the limit for a second).
    """
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


def record_row(f: Finished, s: plan.Settlement) -> dict[str, Any]:
    """Return the `queries.RECORD` row of one finished attempt and its settlement."""
    text = f.body.decode("utf-8", "replace").replace("\x00", "\ufffd")
    return {
        "id": f.job.id,
        "tenant": f.job.tenant_id,
        "spend": 1 if s.decision.spends_attempt else 0,
        "status": s.status,
        "dead_reason": s.decision.reason if s.status == "dead" else None,
        "next": _iso(s.decision.next_attempt_at),
        "trigger": f.job.next_trigger,
        "started": _iso(f.started_at),
        "duration": f.duration,
        "status_code": f.outcome.status_code,
        "body": text or None,
        "error_kind": f.outcome.error_kind,
        "error": f.outcome.error,
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _fields(job: plan.Claimed, **more: Any) -> dict[str, Any]:
    return {
        "event_id": job.event_id,
        "delivery_id": job.id,
        "endpoint_id": job.endpoint_id,
        "attempt": job.attempts,
        **more,
    }
