"""The relay daemon: committed outbox events become deliveries on the Dramatiq queue.

Two jobs share one loop:

- fan-out: claim a batch of committed events, create one delivery per matching endpoint (its
  event types or patterns, its payload filter: both decided in the statement) and commit,
  then push one queue message per delivery (guarantee 2); count what filters dropped;
- scheduler: enqueue deliveries whose retry is due, and re-enqueue queued deliveries whose
  message Redis lost (relay killed between commit and push, Redis flushed), so nothing stays
  pending for ever and Redis holds nothing Postgres cannot rebuild (guarantees 3 and 6);
  requeue what dead workers had fetched and not handed over (`Queue.requeue_abandoned`);
  hand each open circuit whose cooldown is over its one probe; wake ordered deliveries left
  waiting with nothing before them (a safety net: workers wake the next of a key at once);
- dead letters: count every new one (webhooks_dead_letters_total, whoever filed it) and
  announce them as `webhooks.delivery.dead` events (worker.policy.operations).

Every claim uses FOR UPDATE SKIP LOCKED in one statement, its own transaction, so any number
of relays run at once (guarantee 7). No transaction is open during a Redis call.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType
from typing import Any

import psycopg

from worker.outages import TRANSIENT, Outage, retrying
from worker.policy import operations
from worker.queue import Queue
from worker.settings import Settings
from worker.store import relay as store
from worker.store.announce import announce
from worker.store.db import Opener

log = logging.getLogger("webhooks.relay")

#: How the relay's connections are named in pg_stat_activity.
ROLE = "webhooks-relay"


@dataclass(frozen=True)
class RelayConfig:
    """What the relay runs by: the deployment's settings (`of`), and its own timing."""

    queue: str
    #: Events fanned out per statement (`Settings.relay_batch_size`).
    batch_size: int
    #: Seconds a queued delivery is left to its message before the scheduler checks on it.
    lease: float
    #: WEBHOOKS_MAX_DELIVERY_AGE: deliveries created behind an open circuit wait that long.
    max_age: float
    #: WEBHOOKS_OPERATIONS_TENANT: where operational events are published.
    operations_tenant: str
    #: WEBHOOKS_ORDERED_ON_DEATH is ``block``: a key whose head is dead waits for an operator.
    block_on_death: bool = False
    #: Seconds to wait before checking again on a message Redis still holds (long queue).
    #: Short enough that a message a worker had to drop (its claim failed while Postgres
    #: was down) is replaced within a minute; long enough that a long queue is not rechecked
    #: row by row every few seconds.
    recheck: float = 60.0
    #: Seconds between polls when no notification arrives (LISTEN can be lost via poolers),
    #: and between scheduler passes: fan-out runs on every notification, the scheduler's
    #: two queries at most once per interval however busy the outbox is.
    poll_interval: float = 1.0
    #: Seconds between passes over new dead letters: at most one webhooks.delivery.dead
    #: event per endpoint and reason per pass.
    announce_interval: float = 10.0
    #: Seconds between sweeps for deliveries parked behind a circuit that has closed.
    sweep_interval: float = 30.0
    #: Seconds between sweeps for ordered deliveries left waiting with nothing before them.
    order_sweep_interval: float = 5.0

    @classmethod
    def of(cls, settings: Settings) -> RelayConfig:
        """Return the relay's configuration from ``settings``, with its own intervals."""
        return cls(
            queue=settings.queue_name,
            batch_size=settings.relay_batch_size,
            lease=settings.relay_lease,
            max_age=settings.max_delivery_age,
            operations_tenant=settings.operations_tenant,
            block_on_death=settings.ordered_on_death == "block",
        )


@dataclass
class Stats:
    """Count what the relay has done, for logs, metrics and tests."""

    events: int = 0
    deliveries: int = 0
    scheduled: int = 0
    reenqueued: int = 0
    probes: int = 0
    #: messages dead workers had fetched, put back on the queue
    requeued: int = 0
    batches: int = 0
    #: dead letters counted, by reason, whoever filed them
    dead_letters: dict[str, int] = field(default_factory=dict)
    #: events an endpoint's payload filter kept from it, by endpoint id
    filtered: dict[str, int] = field(default_factory=dict)


class Relay:
    """Run fan-out and scheduling until stopped.

    It receives what it talks to (`worker.app.App.relay` builds them): ``open`` opens its
    Postgres connections (again after an outage), ``queue`` is the broker's queue, closed
    after an outage too (it reconnects on next use).
    """

    def __init__(self, config: RelayConfig, open: Opener, queue: Queue) -> None:
        self.config = config
        self.stats = Stats()
        self.stopping = threading.Event()
        self._open = open
        self._conn: psycopg.Connection[Any] | None = None
        self._listener: psycopg.Connection[Any] | None = None
        self.queue = queue
        self._outage = Outage("Postgres or the broker")
        self._schedule_at = 0.0  # time.monotonic() when the scheduler is next due
        self._announce_at = 0.0
        self._sweep_at = 0.0
        #: Deliveries enqueued again during the current `schedule_sweep` (logged once).
        self._swept_lost = 0
        self._order_sweep_at = 0.0
        # Postgres's clock when this relay first connected; None once Redis was checked.
        self._first_seen: datetime | None = None
        self._redis_checked = False
        #: Called after each relayed batch with (events, deliveries, seconds), for metrics.
        self.on_batch: list[Callable[[int, int, float], None]] = []
        #: Called after each relayed batch with (the relay's connection, the
        #: new deliveries' ids, its start and end in time.time_ns()), for tracing
        #: (`worker.observe.tracing.Tracing.fanned_out`).
        self.on_fan_out: list[Callable[[psycopg.Connection[Any], list[int], int, int], None]] = []

    # -- connections ----------------------------------------------------------------------

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._open(ROLE)
            if not self._redis_checked and self._first_seen is None:
                self._first_seen = store.clock(self._conn)
        return self._conn

    def _listen(self) -> psycopg.Connection[Any]:
        if self._listener is None or self._listener.closed:
            self._listener = self._open(ROLE)
            store.listen(self._listener)
        return self._listener

    def close(self) -> None:
        """Close every connection (they reopen on next use)."""
        for conn in (self._conn, self._listener):
            if conn is not None:
                with contextlib.suppress(Exception):  # closing a broken connection
                    conn.close()
        self._conn = self._listener = None
        self.queue.close()

    # -- one step of each job -------------------------------------------------------------

    def fan_out_once(self) -> tuple[int, int]:
        """Relay one batch of events; return (events, deliveries)."""
        started = time.monotonic()
        started_ns = time.time_ns()
        # One statement on an autocommit connection is one transaction: no BEGIN and COMMIT
        # round trips around it (two of the three a batch used to cost).
        config = self.config
        rows = store.fan_out(self._db(), config.batch_size, config.lease, config.max_age)
        events = rows[0].events if rows else 0
        created = [(r.id, r.message_id) for r in rows if r.id is not None]
        # Deliveries behind an open circuit have no message: they wait for it to close.
        items = [(d, m) for d, m in created if m]
        # Committed: the deliveries exist. If the push below fails or this process dies here,
        # the scheduler re-enqueues them once their lease has passed.
        self.queue.enqueue(items)
        if events:
            self.stats.events += events
            self.stats.deliveries += len(created)
            self.stats.batches += 1
            filtered = 0
            for r in rows:
                if r.filtered_endpoint is not None and r.filtered:
                    counts = self.stats.filtered
                    counts[r.filtered_endpoint] = counts.get(r.filtered_endpoint, 0) + r.filtered
                    filtered += r.filtered
            seconds = time.monotonic() - started
            log.info(
                "relayed batch",
                extra={
                    "events": events,
                    "deliveries": len(created),
                    "filtered": filtered,
                    "seconds": round(seconds, 4),
                },
            )
            for callback in self.on_batch:
                callback(events, len(created), seconds)
            for hook in self.on_fan_out:
                hook(self._db(), [d for d, _ in created], started_ns, time.time_ns())
        return events, len(created)

    def check_redis(self) -> int:
        """Recheck every queued delivery if Redis lost its data; return how many, and warn.

        A key only the relays write: when it is missing, Redis was flushed or restarted
        empty since a relay last looked (SET NX makes one relay of many do the recheck).
        Queued deliveries then had their messages pushed into a Redis that no longer holds
        them. On a first start the key is missing too: the deliveries this relay fanned out
        since it started are rechecked (cheap) but not reported lost. The check comes after
        the first fan-out, so a relay commits its deliveries before any Redis call.
        """
        first, self._redis_checked = not self._redis_checked, True
        before, self._first_seen = (self._first_seen if first else None), None
        if not self.queue.lost_data():
            return 0
        row = store.recheck_queued(self._db(), before)
        if row.lost:
            log.warning(
                "Redis lost its data: checking every queued delivery now",
                extra={"deliveries": row.lost},
            )
        return row.rechecked

    def requeue_once(self) -> int:
        """Put back on the queue what dead workers had fetched; return how many messages."""
        requeued = self.queue.requeue_abandoned()
        if requeued:
            self.stats.requeued += requeued
            log.warning("requeued the messages of a worker that died", extra={"messages": requeued})
        return requeued

    def schedule_once(self) -> int:
        """Enqueue one batch of due and orphaned deliveries; return how many were enqueued.

        Counts what was enqueued again for `schedule_sweep` to log."""
        self.check_redis()
        rows = store.schedule(self._db(), self.config.batch_size, self.config.lease)
        if not rows:
            return 0
        checked = [r for r in rows if r.had_message]
        # On RabbitMQ every answer is False: whatever outlived its lease is enqueued again
        # (a duplicate makes no second attempt, guarantee 5; see worker.queue.rabbitmq).
        alive = self.queue.may_be_pending([r.message_id for r in checked])
        still_queued = [r.id for r, ok in zip(checked, alive, strict=True) if ok]
        if still_queued:
            store.extend_lease(self._db(), still_queued, self.config.recheck)
        keep = set(still_queued)
        items = [(r.id, r.message_id) for r in rows if r.id not in keep]
        self.queue.enqueue(items)
        lost = len(checked) - len(still_queued)
        self.stats.scheduled += len(items) - lost
        self.stats.reenqueued += lost
        self._swept_lost += lost
        return len(items)

    def schedule_sweep(self) -> int:
        """Enqueue every due and orphaned delivery, batch by batch; return how many.

        What was enqueued again for a lost message (or, on RabbitMQ, a lease that ran out)
        is logged once for the sweep with its count, not once per batch: on RabbitMQ a
        backlog older than the lease comes back in many batches, routinely.
        """
        self._swept_lost = 0
        work = 0
        try:
            while not self.stopping.is_set():
                n = self.schedule_once()
                work += n
                if n < self.config.batch_size:
                    break
        finally:
            self._report_reenqueued(self._swept_lost)
            self._swept_lost = 0
        return work

    def _report_reenqueued(self, lost: int) -> None:
        if not lost:
            return
        if self.queue.can_tell_pending:
            log.warning(
                "re-enqueued deliveries whose queue message was lost", extra={"deliveries": lost}
            )
        else:
            # Routine on RabbitMQ for a backlog older than the lease: not a loss, so no warning.
            log.info(
                "re-enqueued deliveries whose lease ran out (the broker cannot tell whether"
                " their message is still queued)",
                extra={"deliveries": lost},
            )

    def probe_once(self) -> int:
        """Hand each open circuit whose cooldown is over its one probe; return how many."""
        rows = store.probe(self._db(), self.config.batch_size, self.config.lease)
        if rows:
            self.queue.enqueue([(r.id, r.message_id) for r in rows])
            self.stats.probes += len(rows)
            for r in rows:
                log.info("circuit probe", extra={"endpoint_id": r.endpoint_id, "delivery_id": r.id})
        if time.monotonic() >= self._sweep_at:
            self._sweep_at = time.monotonic() + self.config.sweep_interval
            for endpoint_id in store.close_idle(self._db()):
                log.info(
                    "circuit closed: no delivery left to probe with",
                    extra={"endpoint_id": endpoint_id},
                )
            swept = store.sweep_parked(self._db())
            if swept:
                log.info("deliveries no longer behind a circuit", extra={"deliveries": swept})
        return len(rows)

    def sweep_ordered_once(self) -> int:
        """Wake ordered deliveries left waiting with nothing before them; return how many."""
        config = self.config
        rows = store.sweep_ordered(
            self._db(), config.batch_size, config.lease, config.block_on_death
        )
        if rows:
            self.queue.enqueue([(r.id, r.message_id) for r in rows])
            log.info("ordered deliveries woken by the sweep", extra={"deliveries": len(rows)})
        return len(rows)

    def announce_once(self) -> int:
        """Count and announce a batch of new dead letters; return how many."""
        tenant = self.config.operations_tenant
        conn = self._db()
        with conn.transaction():
            rows = store.new_dead_letters(conn, self.config.batch_size)
            announced = [r.announced() for r in rows if operations.concerns(r.tenant_id, tenant)]
            if announced:
                announce(conn, operations.deliveries_dead(announced), tenant)
        for r in rows:
            reason = r.reason
            self.stats.dead_letters[reason] = self.stats.dead_letters.get(reason, 0) + 1
        return len(rows)

    # -- the loop -------------------------------------------------------------------------

    def step(self) -> int:
        """Fan out until the outbox is drained, then schedule if due; return work done."""
        work = 0
        while not self.stopping.is_set():
            events, _ = self.fan_out_once()
            work += events
            if events < self.config.batch_size:
                break
        now = time.monotonic()
        if now >= self._announce_at:
            while not self.stopping.is_set() and self.announce_once() >= self.config.batch_size:
                pass
            self._announce_at = now + self.config.announce_interval
        if now < self._schedule_at:
            return work
        work += self.requeue_once()
        work += self.schedule_sweep()
        if not self.stopping.is_set():
            work += self.probe_once()
        if not self.stopping.is_set() and now >= self._order_sweep_at:
            self._order_sweep_at = now + self.config.order_sweep_interval
            work += self.sweep_ordered_once()
        self._schedule_at = time.monotonic() + self.config.poll_interval
        return work

    def wait(self) -> None:
        """Sleep until a publish commits (NOTIFY) or the scheduler is due."""
        listener = self._listen()
        timeout = min(self.config.poll_interval, self._schedule_at - time.monotonic())
        for _ in listener.notifies(timeout=max(0.0, timeout), stop_after=1):
            pass
        # Fold every other pending notification into this wake-up.
        for _ in listener.notifies(timeout=0):
            pass

    def _iteration(self) -> None:
        self._listen()
        if self.step() == 0 and not self.stopping.is_set():
            self.wait()
        if not self.stopping.is_set():
            # An iteration cut short by a stop skipped its work: it proves no recovery.
            self._outage.recovered()

    def run(self) -> None:
        """Relay and schedule until `stop`; transient errors back off and never exit."""
        log.info("relay started", extra={"queue": self.config.queue})
        policy = retrying(self._outage, stopping=self.stopping, on_retry=self.close)
        while not self.stopping.is_set():
            try:
                policy(self._iteration)
            except TRANSIENT:
                break  # only when stopping: the policy retries every transient error until then
        self.close()
        log.info(
            "relay stopped",
            extra={"events": self.stats.events, "deliveries": self.stats.deliveries},
        )

    def stop(self, *_: Any) -> None:
        """Ask the loop to finish its current batch and return."""
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        """Stop cleanly on SIGTERM and SIGINT."""

        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("stopping on signal %s", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
