"""A receiver policy that fails at random, and the check that ordered delivery held.

`OrderLog.policy` answers a `Sink` route: 2xx, 500, or a 500 after longer than the request
timeout (the worker has given up by then: a timeout). It notes when each request arrived and
when its answer was decided. `OrderLog.violations` then checks the promise of ordered
delivery: no request for an event arrived before the previous event of its key had been
answered 2xx (or had died, where `continue` lets its key go on).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from producers import Event


@dataclass(frozen=True)
class Visit:
    """One request as the receiver saw it: which event, when it came, how it ended."""

    event_id: str
    arrived: float
    answered: float
    status: int


def keyed_events(keys: int, per_key: int, event_type: str = "order.updated") -> list[Event]:
    """Return ``keys * per_key`` events, the keys interleaved, each numbered in its key."""
    return [
        Event(event_type, {"key": f"k{k}", "seq": s}, ordering_key=f"k{k}")
        for s in range(per_key)
        for k in range(keys)
    ]


@dataclass
class OrderLog:
    """Answer requests at random and remember each one (thread-safe)."""

    #: The chance of a 500, and of a 500 after ``stall`` seconds (a timeout to the worker).
    fail: float = 0.0
    timeout: float = 0.0
    stall: float = 0.0
    #: Seconds a 2xx takes.
    delay: float = 0.0
    seed: int = 0
    #: Answer 500 to every request of these events (until cleared).
    refuse: set[str] = field(default_factory=set)
    #: Answer 500 to every request while set (an outage).
    down: bool = False
    visits: list[Visit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def policy(self, webhook_id: str, _n: int) -> int:
        arrived = time.monotonic()
        with self.lock:
            roll = self._random.random()
        if self.down or webhook_id in self.refuse:
            status = 500
        elif roll < self.timeout:
            time.sleep(self.stall)
            status = 500
        elif roll < self.timeout + self.fail:
            status = 500
        else:
            if self.delay:
                time.sleep(self.delay)
            status = 200
        with self.lock:
            self.visits.append(Visit(webhook_id, arrived, time.monotonic(), status))
        return status

    def violations(self, order: Iterable[list[str]], dead: Iterable[str] = ()) -> list[str]:
        """Return every request that overtook the event before it in its key.

        ``order`` lists each key's event ids in publish order; a request for one of them must
        arrive after a 2xx answer to the one before it, unless that one is in ``dead`` (it
        died and its key went on).
        """
        with self.lock:
            visits = list(self.visits)
        first_ok: dict[str, float] = {}
        for v in visits:
            if 200 <= v.status < 300:
                first_ok[v.event_id] = min(first_ok.get(v.event_id, v.answered), v.answered)
        died = set(dead)
        previous: dict[str, str] = {}
        for ids in order:
            for before, after in itertools.pairwise(ids):
                previous[after] = before
        found = []
        for v in visits:
            before = previous.get(v.event_id)
            if before is None or before in died:
                continue
            ok_at = first_ok.get(before)
            if ok_at is None or ok_at > v.arrived:
                found.append(
                    f"{v.event_id} arrived at {v.arrived:.3f}, before {before} was answered 2xx"
                    f" ({'never' if ok_at is None else f'at {ok_at:.3f}'})"
                )
        return found

    def events_seen(self) -> set[str]:
        with self.lock:
            return {v.event_id for v in self.visits}


def by_key(events: list[Event], ids: list[str]) -> list[list[str]]:
    """Group published event ids by ordering key, in publish order."""
    keys: dict[str | None, list[str]] = {}
    for event, event_id in zip(events, ids, strict=True):
        keys.setdefault(event.ordering_key, []).append(event_id)
    return list(keys.values())
