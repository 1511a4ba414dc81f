"""Decide what a delivery does after an attempt: succeed, retry, defer, disable or die.

Guarantee 3 rests here: every failure either schedules a later attempt inside the schedule
and the maximum age, or sends the delivery to the dead letters, so none stays pending for
ever. Throttling and deferrals (open circuit, rate limit, concurrency) never use up an
attempt, but they cannot outlive the maximum age either.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from worker.policy.outcome import Kind, Outcome

__all__ = [
    "DEAD_REASONS",
    "Action",
    "DeadReason",
    "Decision",
    "decide",
    "default_jitter",
    "defer",
]

Action = Literal["succeed", "retry", "dead", "defer", "disable"]
#: Why a delivery went to the dead letters: the one vocabulary of the retry policy, the
#: engine, `dlq list --reason`, the webhooks_dead_letters_total metric and the README.
DeadReason = Literal["attempts_exhausted", "expired", "endpoint_disabled", "tenant_mismatch"]
DEAD_REASONS: tuple[DeadReason, ...] = get_args(DeadReason)

# A deferral sooner than this would spin on an endpoint that is asking us to slow down.
_MIN_THROTTLE_DELAY = 1.0


@dataclass(frozen=True)
class Decision:
    """Hold what to do with a delivery after one attempt or deferral."""

    action: Action
    next_attempt_at: datetime | None = None
    reason: DeadReason | None = None
    spends_attempt: bool = True


def default_jitter(delay: float) -> float:
    """Return the delay spread by ±20% so retries of one outage do not arrive together."""
    return delay * random.uniform(0.8, 1.2)


def decide(
    outcome: Outcome,
    *,
    attempts_made: int,
    schedule: Sequence[float],
    created_at: datetime,
    now: datetime,
    max_age: float,
    jitter: Callable[[float], float] = default_jitter,
) -> Decision:
    """Return the decision after an attempt with this outcome.

    ``schedule[i]`` is the delay before attempt ``i + 1``, so ``len(schedule)`` attempts are
    allowed; ``attempts_made`` includes the attempt just classified.
    """
    if not schedule:
        raise ValueError("the retry schedule needs at least one delay")
    if attempts_made < 1:
        raise ValueError(f"attempts_made counts the attempt just made, got {attempts_made}")
    if outcome.kind is Kind.SUCCEEDED:
        return Decision("succeed")
    if outcome.kind is Kind.GONE:
        return Decision("disable", reason="endpoint_disabled")
    if outcome.kind is Kind.THROTTLED:
        if outcome.retry_after is not None:
            # The receiver named its time; jitter would only make us early or late.
            seconds = outcome.retry_after
        else:
            # A throttled attempt is not spent, so the next slot is the one this attempt
            # would have led to, or the last one when it was the final attempt.
            seconds = jitter(schedule[min(attempts_made, len(schedule) - 1)])
        return defer(now, max(seconds, _MIN_THROTTLE_DELAY), created_at, max_age)
    if attempts_made >= len(schedule):
        return Decision("dead", reason="attempts_exhausted")
    next_at = now + timedelta(seconds=jitter(schedule[attempts_made]))
    if _too_old(next_at, created_at, max_age):
        return Decision("dead", reason="expired")
    return Decision("retry", next_at)


def defer(now: datetime, seconds: float, created_at: datetime, max_age: float) -> Decision:
    """Return a deferral by `seconds` that spends no attempt, or death once too old."""
    next_at = now + timedelta(seconds=max(seconds, 0.0))
    if _too_old(next_at, created_at, max_age):
        return Decision("dead", reason="expired", spends_attempt=False)
    return Decision("defer", next_at, spends_attempt=False)


def _too_old(next_at: datetime, created_at: datetime, max_age: float) -> bool:
    return (next_at - created_at).total_seconds() > max_age
