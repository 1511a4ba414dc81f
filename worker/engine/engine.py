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
from collections import deque
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
from worker.policy.window import START, Window
from worker.settings import Settings
from worker.store import engine as store
from worker.store.vault import Vault

__all__ = ["Engine", "Observer"]

log = logging.getLogger("webhooks.worker")

#: Seconds a delivery beyond its endpoint's window waits in the process for a request to that
#: endpoint to end, before it is put back (due at once) for its lock's sake.
WINDOW_WAIT = LOCK_MARGIN - 1.0
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
        # Per endpoint, on the loop only: its slow-start window, requests in flight, and the
        # deliveries waiting for one of those to end (`worker.policy.window`).
        self._windows: dict[str, Window] = {}
        self._in_flight: dict[str, int] = {}
        self._waiting: dict[str, deque[tuple[plan.Claimed, float]]] = {}
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
            wait = rate_waits.get(job.id)
            if wait is not None:
                self.writer.release(job, plan.defer(job, now, wait, max_age))
            else:
                self._send_or_wait(job, now)

    def _send_or_wait(self, job: plan.Claimed, now: datetime) -> None:
        """Send within the endpoint's window; beyond it, wait in the process for one of its
        requests to end (within the endpoint's share of the slots), or be put back for a
        second or two."""
        endpoint = job.endpoint_id
        window = self._windows.setdefault(endpoint, Window())
        if job.circuit_open_until is not None:
            window.width = START  # a probe: the endpoint comes back from an outage
        in_flight = self._in_flight.get(endpoint, 0)
        if in_flight < window.limit(self.concurrency):
            self._send(job)
            return
        waiting = self._waiting.setdefault(endpoint, deque())
        if in_flight + len(waiting) < window.share(self.concurrency):
            waiting.append((job, self._loop.time()))
            self._loop.call_later(WINDOW_WAIT, self._next_waiting, endpoint)
            return
        delay = 1.0 + random.uniform(0, 1)
        self.writer.release(job, plan.defer(job, now, delay, self.settings.max_delivery_age))

    def _send(self, job: plan.Claimed) -> None:
        self._in_flight[job.endpoint_id] = self._in_flight.get(job.endpoint_id, 0) + 1
        self._spawn(self._attempt(job))

    def _next_waiting(self, endpoint: str) -> None:
        """Send what waits for this endpoint while its window allows; put back (due at once)
        what has waited `WINDOW_WAIT`: its claim's lock must outlast its request."""
        waiting = self._waiting.get(endpoint)
        if not waiting:
            return
        limit = self._windows[endpoint].limit(self.concurrency)
        expired = self._loop.time() - WINDOW_WAIT
        now = datetime.now(UTC)
        while waiting:
            job, since = waiting[0]
            if since <= expired:
                waiting.popleft()
                self.writer.release(job, plan.defer(job, now, 0, self.settings.max_delivery_age))
            elif self._in_flight.get(endpoint, 0) < limit:
                waiting.popleft()
                self._send(job)
            else:
                break
        if not waiting:
            del self._waiting[endpoint]

    # -- send -------------------------------------------------------------------------------

    async def _attempt(self, job: plan.Claimed) -> None:
        endpoint = job.endpoint_id
        span = self.tracing.attempt(job)
        try:
            finished = await deliver_one(self.sender, self.vault, job, span.headers)
        finally:
            left = self._in_flight[endpoint] - 1
            if left:
                self._in_flight[endpoint] = left
            else:
                del self._in_flight[endpoint]
        span.end(finished)
        if finished.outcome.error_kind is ErrorKind.SECRET:
            # /readyz says why while it lasts.
            self.observer.secret_failed()
        self._windows[endpoint].answered(finished.outcome, finished.duration, self.concurrency)
        self.writer.finished(finished)
        self._next_waiting(endpoint)
