"""How many requests one worker process may have in flight to one endpoint (pure).

A slow start, as TCP's: an endpoint this process has not heard from yet, or that comes back
from an outage (its circuit's probe), may have `START` requests in flight; every answer
given on purpose (2xx, 4xx) widens its window by one, so it doubles each round trip, up to
the process's ceiling. A sign that the receiver lacks capacity (a timeout, a connection that
failed, 429, 502, 503, 504) halves it, down to `START`; other failures (a 500) leave it as it
is, since the circuit breaker is what answers an endpoint that keeps failing.

So a receiver that has just healed, or that is sent to for the first time, gets its backlog
at the pace it answers, not as a few hundred simultaneous connections (a small accept queue
turns those into SYN retries of up to 31 s, timeouts, and a circuit that opens again). One
answering in 100 ms reaches 256 in flight within about half a second.

An endpoint whose answers take longer than `SLOW_SECONDS` on average, or that has not
answered yet, keeps at most half of the ceiling however wide its window, so a receiver that
hangs cannot starve the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.policy.outcome import ErrorKind, Kind, Outcome

__all__ = ["SLOW_SECONDS", "START", "Window", "narrows", "widens"]

#: Requests in flight to an endpoint not heard from yet, or coming back from an outage.
START = 8
#: Average seconds per attempt above which an endpoint is slow (at most half the slots).
SLOW_SECONDS = 2.0


#: Failures that say the receiver lacks capacity (with every throttling answer).
_CAPACITY = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECT, ErrorKind.PROTOCOL})


def narrows(outcome: Outcome) -> bool:
    """Whether an attempt says its receiver is short of capacity (halve the window)."""
    return outcome.kind is Kind.THROTTLED or outcome.error_kind in _CAPACITY


def widens(outcome: Outcome) -> bool:
    """Whether the receiver answered on purpose (2xx, 4xx, 410 Gone): widen the window."""
    if outcome.kind in (Kind.SUCCEEDED, Kind.GONE):
        return True
    code = outcome.status_code
    return outcome.kind is Kind.FAILED and code is not None and code < 500


@dataclass
class Window:
    """One endpoint's window in one process: its width and its average answer time."""

    width: int = START
    latency: float | None = None

    def share(self, ceiling: int) -> int:
        """Return how many of the process's slots the endpoint may hold, in flight or waiting
        for its window: all of them, or half while it is slow."""
        return max(1, ceiling // 2) if self.slow else ceiling

    def limit(self, ceiling: int) -> int:
        """Return how many requests may be in flight now, given the process's ceiling."""
        return max(1, min(self.width, self.share(ceiling)))

    @property
    def slow(self) -> bool:
        """Whether answers take longer than `SLOW_SECONDS` (or none came yet)."""
        return self.latency is None or self.latency > SLOW_SECONDS

    def answered(self, outcome: Outcome, seconds: float, ceiling: int) -> None:
        """Take one finished attempt into account: its time, and whether it narrows."""
        self.latency = seconds if self.latency is None else 0.7 * self.latency + 0.3 * seconds
        if narrows(outcome):
            self.width = max(START, self.width // 2)
        elif widens(outcome):
            self.width = min(self.width + 1, ceiling)
