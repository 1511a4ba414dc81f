"""Keep one bad endpoint from hurting the others: its circuit.

An endpoint's circuit stops sending to a failing one. It is shared by every process: its
state lives in Postgres, on the endpoint's row, and these pure functions decide on it.
`needs_health` and `fold_health` turn a batch's outcomes into each endpoint's new health
(consecutive failures, failing since, and its circuit); before an attempt, `circuit_allows`
holds back what an open circuit stops and `park` puts it back without spending an attempt.

An endpoint's share of one process (how many requests it may have in flight) is its
slow-start window, `worker.policy.window`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.policy.outcome import Kind
from worker.policy.plan import Claimed, Release

__all__ = [
    "CircuitPolicy",
    "Health",
    "HealthChange",
    "circuit_allows",
    "fold_health",
    "needs_health",
    "park",
]


@dataclass(frozen=True)
class CircuitPolicy:
    """When circuits open and how long they stay open (WEBHOOKS_CIRCUIT_*)."""

    failures: int = 5  # consecutive failed attempts that open it; 0 turns the breaker off
    cooldown: float = 30.0
    max_cooldown: float = 600.0

    @property
    def recovery_threshold(self) -> int:
        """Failures after which a success counts as a recovery (an operational event)."""
        return self.failures or 5


@dataclass(frozen=True)
class Health:
    """An endpoint's stored health: failures in a row, since when, and its circuit."""

    consecutive_failures: int = 0
    failing_since: datetime | None = None
    circuit_open_until: datetime | None = None
    circuit_cooldown: float | None = None
    circuit_probe_id: int | None = None
    circuit_probe_until: datetime | None = None

    @property
    def is_open(self) -> bool:
        """Return whether the circuit is open (probing included)."""
        return self.circuit_open_until is not None


@dataclass(frozen=True)
class HealthChange:
    """What a batch's outcomes did to one endpoint's health."""

    health: Health
    opened: bool = False  # the circuit opened (not a failed probe reopening it)
    closed: bool = False  # the circuit was open and a success closed it
    recovered: bool = False  # first success after an open circuit or many failures
    probe_failed: bool = False


def needs_health(job: Claimed, kinds: Iterable[Kind]) -> bool:
    """Return whether these outcomes can change the endpoint's stored health.

    Successes to an endpoint that looked healthy when claimed change nothing (the common
    case costs no endpoint write); anything else is folded under the endpoint's row lock.
    """
    clean = job.consecutive_failures == 0 and job.circuit_open_until is None
    return not (clean and all(kind is not Kind.FAILED for kind in kinds))


def fold_health(
    before: Health,
    results: Iterable[tuple[int, Kind]],
    now: datetime,
    policy: CircuitPolicy,
) -> HealthChange:
    """Fold attempts (delivery id, outcome kind, in the order they ended) into the health.

    A success resets the failures and closes the circuit. A failure counts; the one that
    reaches `policy.failures` opens the circuit for `cooldown`; a failed probe reopens it
    for twice the last cooldown, up to `max_cooldown`. A throttled probe gives its turn
    back and waits one more cooldown. Throttles and 410 say nothing else of health.
    """
    failures = before.consecutive_failures
    failing_since = before.failing_since
    open_until = before.circuit_open_until
    cooldown = before.circuit_cooldown
    probe_id, probe_until = before.circuit_probe_id, before.circuit_probe_until
    was_open = before.is_open
    opened = closed = recovered = probe_failed = False
    for delivery_id, kind in results:
        is_probe = probe_id is not None and delivery_id == probe_id
        if kind is Kind.SUCCEEDED:
            if open_until is not None or failures >= policy.recovery_threshold:
                recovered = True
            closed = closed or open_until is not None
            failures, failing_since = 0, None
            open_until = cooldown = probe_id = probe_until = None
        elif kind is Kind.FAILED:
            failures += 1
            failing_since = failing_since or now
            if not policy.failures:
                continue
            if is_probe:
                cooldown = min((cooldown or policy.cooldown) * 2, policy.max_cooldown)
                open_until = now + timedelta(seconds=cooldown)
                probe_id = probe_until = None
                probe_failed = True
            elif open_until is None and failures >= policy.failures:
                cooldown = policy.cooldown
                open_until = now + timedelta(seconds=cooldown)
                opened = True
        elif is_probe:
            open_until = now + timedelta(seconds=cooldown or policy.cooldown)
            probe_id = probe_until = None
    health = Health(failures, failing_since, open_until, cooldown, probe_id, probe_until)
    return HealthChange(
        health,
        opened=opened,
        closed=closed and was_open,
        recovered=recovered,
        probe_failed=probe_failed,
    )


def circuit_allows(job: Claimed, now: datetime) -> bool:
    """Return whether the endpoint's circuit lets this job's request go.

    Closed: everything goes. Open: only the one delivery the scheduler chose as the probe,
    while its turn lasts (every process reads the same circuit from Postgres).
    """
    if job.circuit_open_until is None:
        return True
    return (
        job.circuit_probe_id == job.id
        and job.circuit_probe_until is not None
        and job.circuit_probe_until > now
    )


def park(job: Claimed, max_age: float) -> Release:
    """Return the release of a delivery an open circuit holds back, spending no attempt.

    It waits at its expiry time: the circuit's closing makes it due at once, and if the
    circuit never closes it still dies of old age (guarantee 3), without the scheduler
    looking at it in between.
    """
    return Release(job.budget_started_at + timedelta(seconds=max_age), circuit_wait=True)
