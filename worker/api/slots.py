"""Bound how many slow calls run at once: a few per caller, and a few in all.

`POST /v1/endpoints/{id}/test` waits for the tenant's own receiver, up to the request
timeout. Without a bound, one tenant firing tests in parallel would take every thread the
API answers with. `Slots` lets ``per_key`` calls of one key (a tenant) and ``total`` calls in
all run at once; beyond that the call is refused at once with `Full`, which says when a slot
will be free again at the latest (the oldest call's deadline): the API answers 429 with that
``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

#: Endpoint tests one tenant may have in flight at once in one API process.
TESTS_PER_TENANT = 2
#: Endpoint tests in flight at once in one API process, every tenant together: below the
#: API's pool of Postgres connections, and far below the threads that answer requests.
TESTS_IN_ALL = 5
#: Seconds a test may take beyond the request timeout: its writes before and after the
#: attempt, and the host name's resolution.
TEST_MARGIN = 5.0


class Full(Exception):
    """Every slot the call could take is in use; try again after ``retry_after`` seconds."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class Slots:
    """At most ``per_key`` holders of one key and ``total`` in all, each for ``hold`` seconds
    at most (the deadline of the call it guards); thread-safe."""

    def __init__(
        self,
        per_key: int,
        total: int,
        hold: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_key < 1 or total < per_key:
            raise ValueError("need 1 <= per_key <= total")
        self.per_key = per_key
        self.total = total
        self.hold = hold
        self._clock = clock
        self._lock = threading.Lock()
        #: Per key, the deadline of each call holding one of its slots.
        self._held: dict[Hashable, list[float]] = {}

    def in_use(self, key: Hashable | None = None) -> int:
        """Return how many slots ``key`` holds (None: every key together)."""
        with self._lock:
            if key is None:
                return sum(len(deadlines) for deadlines in self._held.values())
            return len(self._held.get(key, ()))

    @contextmanager
    def taken(self, key: Hashable) -> Iterator[None]:
        """Hold one of ``key``'s slots for the block; raise `Full` at once if none is free."""
        deadline = self._take(key)
        try:
            yield
        finally:
            self._give_back(key, deadline)

    def _take(self, key: Hashable) -> float:
        now = self._clock()
        with self._lock:
            mine = self._held.get(key, [])
            if len(mine) >= self.per_key:
                raise Full(
                    f"{len(mine)} tests of this tenant are in flight, the most at once",
                    _seconds_until(min(mine), now),
                )
            everyone = [d for deadlines in self._held.values() for d in deadlines]
            if len(everyone) >= self.total:
                raise Full(
                    f"{len(everyone)} tests are in flight, the most this server runs at once",
                    _seconds_until(min(everyone), now),
                )
            deadline = now + self.hold
            self._held.setdefault(key, []).append(deadline)
            return deadline

    def _give_back(self, key: Hashable, deadline: float) -> None:
        with self._lock:
            mine = self._held.get(key, [])
            mine.remove(deadline)
            if not mine:
                self._held.pop(key, None)


def endpoint_tests(request_timeout: float) -> Slots:
    """Return the slots of endpoint tests: `TESTS_PER_TENANT` each, `TESTS_IN_ALL` in all."""
    return Slots(TESTS_PER_TENANT, TESTS_IN_ALL, request_timeout + TEST_MARGIN)


def _seconds_until(deadline: float, now: float) -> int:
    """Return whole seconds until ``deadline``, at least 1 (a Retry-After value)."""
    return max(1, math.ceil(deadline - now))
