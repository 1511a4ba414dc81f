"""Keep one slow endpoint from starving the others inside a worker process.

`InFlightLimiter` caps the requests one endpoint may hold at once, so a receiver that hangs
cannot occupy every slot of the engine. It is per-process and in memory. (An endpoint's
circuit, which stops sending to a failing one, is shared by every process: it lives in
Postgres, see worker.policy.plan.fold_health.)
"""

from __future__ import annotations

import threading

__all__ = ["InFlightLimiter"]


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
