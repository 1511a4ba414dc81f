"""Keep one failing or slow endpoint from starving the others inside a worker process.

`CircuitBreaker` stops sending to an endpoint after consecutive failures and lets a single
probe through once the cooldown has passed. `InFlightLimiter` caps the requests one endpoint
may hold at once, so a receiver that hangs cannot occupy every worker thread. Both are
per-process and in memory: losing them only costs a few extra attempts, never a delivery,
since the delivery state lives in Postgres.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CircuitBreaker", "InFlightLimiter"]


@dataclass
class _Circuit:
    failures: int = 0
    # None while closed; the monotonic time the open circuit may be probed again otherwise.
    open_until: float | None = None
    cooldown: float = 0.0
    probe_started: float | None = None


class CircuitBreaker:
    """Track consecutive failures per endpoint and refuse requests while a circuit is open."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_cooldown: float = 600.0,
        probe_timeout: float = 120.0,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {threshold}")
        if cooldown <= 0 or max_cooldown < cooldown:
            raise ValueError("cooldown must be positive and at most max_cooldown")
        self._threshold = threshold
        self._cooldown = cooldown
        self._max_cooldown = max_cooldown
        # A probe whose result never comes back (its thread died) must not hold the circuit
        # half-open for ever: after this long another probe may go.
        self._probe_timeout = probe_timeout
        self._clock = clock
        self._lock = threading.Lock()
        # Only endpoints with failures have an entry, so healthy ones cost no memory.
        self._circuits: dict[str, _Circuit] = {}

    def allow(self, key: str) -> float | None:
        """Return None if a request to `key` may go now, else the seconds to wait.

        When the circuit is half-open the first caller becomes the probe.
        """
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is None or circuit.open_until is None:
                return None
            now = self._clock()
            if now < circuit.open_until:
                return circuit.open_until - now
            if circuit.probe_started is not None:
                probe_ends = circuit.probe_started + self._probe_timeout
                if now < probe_ends:
                    return min(self._cooldown, probe_ends - now)
            circuit.probe_started = now
            return None

    def record(self, key: str, success: bool) -> None:
        """Record the result of a request that `allow` let through."""
        with self._lock:
            if success:
                self._circuits.pop(key, None)
                return
            circuit = self._circuits.setdefault(key, _Circuit())
            circuit.failures += 1
            now = self._clock()
            if circuit.probe_started is not None:
                circuit.cooldown = min(circuit.cooldown * 2, self._max_cooldown)
                circuit.open_until = now + circuit.cooldown
                circuit.probe_started = None
            elif circuit.open_until is None and circuit.failures >= self._threshold:
                circuit.cooldown = self._cooldown
                circuit.open_until = now + circuit.cooldown
            # Otherwise a request let through before the circuit opened failed late: the
            # circuit is already open and keeps its cooldown.

    def release(self, key: str) -> None:
        """Give up a probe without a verdict (deferred, throttled), so another may go."""
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is not None:
                circuit.probe_started = None

    def is_open(self, key: str) -> bool:
        """Return whether requests to `key` are being refused or probed."""
        with self._lock:
            circuit = self._circuits.get(key)
            return circuit is not None and circuit.open_until is not None

    def open_count(self) -> int:
        """Return how many circuits are open or half-open (for a gauge)."""
        with self._lock:
            return sum(1 for circuit in self._circuits.values() if circuit.open_until is not None)


class InFlightLimiter:
    """Count requests in flight per endpoint and refuse those beyond the limit."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._limit = limit
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def try_acquire(self, key: str) -> bool:
        """Take a slot for `key` and return True, or return False when all are taken."""
        with self._lock:
            count = self._counts.get(key, 0)
            if count >= self._limit:
                return False
            self._counts[key] = count + 1
            return True

    def release(self, key: str) -> None:
        """Give back a slot taken by `try_acquire`."""
        with self._lock:
            count = self._counts.get(key, 0)
            if count <= 0:
                raise ValueError(f"release of {key!r} without a matching acquire")
            if count == 1:
                del self._counts[key]
            else:
                self._counts[key] = count - 1

    def in_flight(self, key: str) -> int:
        """Return how many requests to `key` hold a slot."""
        with self._lock:
            return self._counts.get(key, 0)
