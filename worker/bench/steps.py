"""Steps every phase shares: reset, publish, wait on progress, check what arrived."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from producers import Event, publish_many
from worker.bench.options import EVENT_TYPE, PUBLISH_BATCH, QUEUE, BenchError, payload
from worker.bench.rig import Records, Rig
from worker.bench.system import Daemon
from worker.queue import from_url as broker_from_url
from worker.queue import redis as queue
from worker.store import bench
from worker.store.bench import State


def stall_seconds() -> float:
    """Return the stall window as the package has it now (a test may shorten it there)."""
    import worker.bench

    return float(worker.bench.STALL_SECONDS)


class Steps(Rig):
    """The steps of a run that several phases take."""

    def depth(self) -> int:
        """Return how many messages wait in the queue, on either broker."""
        if not self.rabbit:
            return int(self.rds.llen(queue.queue_key(QUEUE)))
        if self._queue is None:
            self._queue = broker_from_url(
                self.opts.broker_url or "", QUEUE, self.opts.rabbitmq_queue_type
            )
        return self._queue.depth()

    def reset(self) -> None:
        """Empty the tables and the queue (the endpoints stay)."""
        bench.truncate(self.conn)
        self.rds.delete(queue.queue_key(QUEUE), queue.messages_key(QUEUE))
        if self.rabbit:
            if self._queue is not None:
                self._queue.close()
                self._queue = None
            self._purge_rabbit()

    def state(self) -> State:
        """Return counts of unrelayed events and of deliveries by status."""
        return bench.state(self.conn)

    def publish_batches(self, count: int, first: int = 0) -> list[str]:
        """Publish `count` events with publish_many, PUBLISH_BATCH per transaction."""
        ids: list[str] = []
        size = self.opts.payload_bytes
        for start in range(first, first + count, PUBLISH_BATCH):
            stop = min(first + count, start + PUBLISH_BATCH)
            with self.conn.transaction():
                key = self.opts.ordering_key
                ids += publish_many(
                    self.conn,
                    [
                        Event(EVENT_TYPE, payload(i, size), ordering_key=key(i))
                        for i in range(start, stop)
                    ],
                )
        return ids

    def wait_received(self, expected: int, watch: Sequence[Daemon]) -> dict[str, Any]:
        """Wait until the receiver has every (event, endpoint) once; fail if it stalls."""
        assert self.receiver is not None
        last, last_change = -1, time.monotonic()
        while True:
            summary = self.receiver.summary()
            if summary["ok_pairs"] >= expected:
                return summary
            for daemon in watch:
                daemon.check()
            if summary["ok_pairs"] != last:
                last, last_change = summary["ok_pairs"], time.monotonic()
            elif time.monotonic() - last_change > (window := stall_seconds()):
                raise BenchError(
                    f"stalled: {summary['ok_pairs']} of {expected} deliveries received,"
                    f" none new for {window:.0f}s ({vars(self.state())})"
                )
            time.sleep(0.01)

    def wait_settled(self, watch: Sequence[Daemon], timeout: float = 60.0) -> State:
        """Wait until every event is relayed and no delivery is pending."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if state.unrelayed == 0 and state.pending == 0:
                return state
            for daemon in watch:
                daemon.check()
            if time.monotonic() > deadline:
                raise BenchError(f"deliveries still pending after {timeout:.0f}s: {vars(state)}")
            time.sleep(0.02)

    def check_delivered(
        self, label: str, event_ids: Sequence[str], records: Records, state: State
    ) -> dict[str, Any]:
        """Compare what the receiver counted with what was published; note any loss."""
        _, paths, ids, codes = records
        wanted = {(e.encode(), p.encode()) for e in event_ids for p in self.endpoint_paths.values()}
        ok = [(i, p) for i, p, c in zip(ids, paths, codes, strict=True) if c == 200]
        received = set(ok)
        lost = len(wanted - received)
        result = {
            "expected": len(wanted),
            "received": len(received & wanted),
            "lost": lost,
            "duplicates": len(ok) - len(received),
            "unexpected": len(received - wanted),
            "failed_requests": codes.count(500),
            "deliveries": state.deliveries,
            "succeeded": state.succeeded,
            "dead": state.dead,
            "pending": state.pending,
            "attempts": state.attempts,
            # Why attempts did not succeed: 500s from --fail-rate, and anything else (which,
            # with no --fail-rate, is what explains a duplicate).
            "unsuccessful_attempts": {
                f"{row.error_kind}: {row.error}"[:200]: row.n
                for row in bench.unsuccessful(self.conn)
            },
        }
        if self.opts.ordering_keys:
            result["order_violations"] = order_violations(
                event_ids, self.opts.ordering_keys, records
            )
        if (
            lost
            or state.succeeded != len(wanted)
            or state.deliveries != len(wanted)
            or result.get("order_violations")
        ):
            self.problems.append(f"{label}: {result}")
        return result

    def _wait_listening(self, daemon: Daemon, interval: float = 0.05) -> None:
        deadline = time.monotonic() + 60
        while True:
            if bench.listening(self.conn, daemon.started):
                return
            daemon.check()
            if time.monotonic() > deadline:
                raise BenchError("the relay did not start listening within 60s")
            time.sleep(interval)

    def _wait_fanned_out(self, events: int, daemon: Daemon) -> float:
        """Wait until the relay has made every delivery of ``events`` events; return when.

        Unordered, that is when the queue holds a message per delivery. Ordered, only the
        first delivery of each key gets one (the others wait for it): when those are queued
        and the outbox is empty.
        """
        endpoints = self.opts.endpoints
        keys = self.opts.ordering_keys
        if not keys:
            return self._wait_enqueued(events * endpoints, daemon)
        self._wait_enqueued(min(events, keys) * endpoints, daemon)
        while self.state().unrelayed:
            daemon.check()
            time.sleep(0.002)
        return time.perf_counter()

    def _wait_enqueued(self, expected: int, daemon: Daemon) -> float:
        """Poll the queue length until it holds `expected` messages; return when it did."""
        last, last_change = -1, time.monotonic()
        while True:
            depth = self.depth()
            if depth >= expected:
                return time.perf_counter()
            if depth != last:
                last, last_change = depth, time.monotonic()
            elif time.monotonic() - last_change > stall_seconds():
                raise BenchError(f"relay stalled at {depth} of {expected} messages")
            daemon.check()
            time.sleep(0.002)


def order_violations(event_ids: Sequence[str], keys: int, records: Records) -> int:
    """Count requests that reached an endpoint before the previous event of their ordering
    key had been answered 2xx there (event ``j`` of ``event_ids`` has key ``j % keys``).

    The receiver notes arrivals, and answers in the order requests arrive on a connection,
    so "answered 2xx before" is read as "a 2xx request for it arrived earlier".
    """
    times, paths, ids, codes = records
    previous = {
        event_ids[j].encode(): event_ids[j - keys].encode() for j in range(keys, len(event_ids))
    }
    first_ok: dict[tuple[bytes, bytes], float] = {}
    for at, path, event_id, code in zip(times, paths, ids, codes, strict=True):
        if code == 200 and (event_id, path) not in first_ok:
            first_ok[(event_id, path)] = at
    violations = 0
    for at, path, event_id in zip(times, paths, ids, strict=True):
        before = previous.get(event_id)
        if before is None:
            continue
        ok_at = first_ok.get((before, path))
        if ok_at is None or ok_at > at:
            violations += 1
    return violations
