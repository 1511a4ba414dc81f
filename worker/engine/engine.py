"""The delivery engine: hundreds of attempts in flight per process on one event loop.

Dramatiq's threads only hand messages over (`Engine.submit`, which blocks while the engine
is full). On the engine's own thread an asyncio loop then, for whatever has arrived:

1. claims every named delivery in one statement (`worker.store.engine.claim`),
2. kills or defers what must not be sent (`plan.admit`, the gates, `plan.defer`),
3. sends the rest concurrently (`worker.delivery.deliver_one`), each within its deadline,
4. hands every finished attempt and every release to the batched writer (`writer.Writer`),
   which records them a statement per batch.

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
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import redis
from psycopg_pool import AsyncConnectionPool

from worker.delivery.attempt import LOCK_MARGIN, deliver_one
from worker.delivery.sender import Sender
from worker.engine.database import Database
from worker.engine.observer import Observer, Quiet
from worker.engine.rates import RateLimits
from worker.engine.writer import MAX_BATCH, Writer
from worker.observe.tracing import OFF, Off, Tracing
from worker.policy import breaker, ordering, plan
from worker.policy.outcome import ErrorKind
from worker.settings import Settings
from worker.store import engine as store
from worker.store.vault import Vault

__all__ = ["Engine", "Observer"]

log = logging.getLogger("webhooks.worker")

#: An endpoint whose attempts take longer than this on average (or that has not answered
#: yet) may hold at most half of a process's slots, so it cannot starve the others.
SLOW_SECONDS = 2.0
#: Seconds a claim statement is retried through a Postgres outage before its deliveries are
#: left to their leases.
CLAIM_PATIENCE = 10.0


class Engine:
    """Claim, send and record deliveries for one worker process; thread-safe `submit`.

    It receives what it talks to (`worker.app.App.engine` builds them): ``db`` (its pool,
    opened and closed by the engine), ``sender``, ``vault`` and ``rate_store`` (the Redis that
    counts rate limits, or None to count them in Postgres).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        db: Database,
        sender: Sender,
        vault: Vault,
        rate_store: redis.Redis | None,
        concurrency: int,
        observer: Observer | None = None,
        tracing: Tracing | Off = OFF,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.settings = settings
        self.concurrency = concurrency
        self.sender = sender
        self.vault = vault
        self.policy = breaker.CircuitPolicy(
            settings.circuit_failures, settings.circuit_cooldown, settings.circuit_max_cooldown
        )
        self.busy = breaker.InFlightLimiter(max(1, concurrency // 2))
        self.observer: Observer = observer or Quiet()
        self.tracing = tracing
        self.db = db
        self.pool: AsyncConnectionPool[Any] = db.pool
        self.rates = RateLimits(rate_store, db)
        self._lock_seconds = settings.request_timeout + LOCK_MARGIN
        self.writer = Writer(
            self.db,
            settings,
            self.policy,
            self.observer,
            lock_seconds=self._lock_seconds,
            spawn=self._spawn,
            done=self._done,
            adopt=self._adopt,
        )
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
        self._latency: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._claim_wake: asyncio.Event | None = None
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
        self.writer.open()
        self._idle = asyncio.Event()
        self._idle.set()
        self.observer.held(0, self.concurrency)
        await self.pool.open(wait=False)
        self._spawn(self._claimer())
        self._spawn(self.writer.run())

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

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
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

    def _adopt(self, items: list[tuple[int, str]]) -> None:
        """Take over deliveries woken by the ones just finished (the next of their ordering
        keys), in those ones' slots: no broker round trip between one event of a key and
        the next. The writer hands back that many fewer (`_done`)."""
        assert self._claim_wake is not None
        self._arrived.extend(items)
        self._claim_wake.set()

    def _done(self, count: int) -> None:
        assert self._idle is not None
        self._held -= count
        self.observer.held(self._held, self.concurrency)
        if count:
            self._slots.release(count)
        if self._held == 0:
            self._idle.set()

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
                    claim = partial(
                        store.claim,
                        ids=[d for d, _ in batch],
                        message_ids=[m for _, m in batch],
                        lock=self._lock_seconds,
                    )
                    jobs = await self.db.run(claim, CLAIM_PATIENCE)
                except Exception:
                    log.exception(
                        "could not claim %d deliveries; their leases bring them back", len(batch)
                    )
                    self._done(len(batch))
                    continue
                # Done, dead, held by another worker, or a stale or duplicate message.
                self._done(len(batch) - len(jobs))
                await self.tracing.claimed(jobs, self.db)
                await self._dispatch(jobs)

    async def _dispatch(self, jobs: Sequence[plan.Claimed]) -> None:
        """Send each claimed job, or put it back: every job ends in one attempt or release."""
        now = datetime.now(UTC)
        max_age = self.settings.max_delivery_age
        admitted: list[plan.Claimed] = []
        on_death = self.settings.ordered_on_death
        for job in jobs:
            release = plan.admit(job, now, max_age)
            if release is None and job.ordering_key is not None:
                verdict = ordering.may_go(
                    job.ordering_key, job.ahead_pending, job.ahead_dead, on_death
                )
                if verdict is not ordering.Verdict.GO:
                    release = ordering.wait(job, max_age)
            if release is None and self.policy.failures and not breaker.circuit_allows(job, now):
                release = breaker.park(job, max_age)
            if release is not None:
                self.writer.release(job, release)
            else:
                admitted.append(job)
        rate_waits = await self.rates.waits([job for job in admitted if job.rate_limit])
        for job in admitted:
            wait, slot = self._gate(job, rate_waits.get(job.id))
            if wait is not None:
                self.writer.release(job, plan.defer(job, now, wait, max_age))
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
        span = self.tracing.attempt(job)
        try:
            finished = await deliver_one(self.sender, self.vault, job, span.headers)
        finally:
            if slot:
                self.busy.release(job.endpoint_id)
        span.end(finished)
        if finished.outcome.error_kind is ErrorKind.SECRET:
            # /readyz says why while it lasts.
            self.observer.secret_failed()
        self._observe_latency(job.endpoint_id, finished.duration)
        self.writer.finished(finished)
