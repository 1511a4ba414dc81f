"""Decide, per claimed delivery, what the engine does: pure functions over values, no I/O.

Before the attempt, `admit` kills what must not be sent (guarantee 8: tenants; guarantee 3:
age), `circuit_allows` holds back what an open circuit stops, and `defer` / `park` put a
gated delivery back without spending an attempt. After it, `settle` turns the outcome into
the delivery's new state, and says when the endpoint must be disabled (410 Gone, or failing
with no success for too long). `needs_health` and `fold_health` turn a batch's outcomes into
each endpoint's new health: consecutive failures, failing since, and its circuit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Literal

from worker.policy import retry
from worker.policy.outcome import Kind, Outcome

__all__ = [
    "CircuitPolicy",
    "Claimed",
    "Health",
    "HealthChange",
    "Release",
    "Settlement",
    "admit",
    "circuit_allows",
    "defer",
    "fold_health",
    "needs_health",
    "park",
    "settle",
]

Status = Literal["pending", "succeeded", "dead"]


@dataclass(frozen=True)
class Claimed:
    """A claimed delivery with what its attempt needs (one row of the claim statement)."""

    id: int
    tenant_id: str
    attempts: int
    spent: int
    budget_started_at: datetime
    next_trigger: str
    event_created_at: datetime
    event_id: str
    event_type: str
    payload: str
    endpoint_id: str
    endpoint_tenant: str
    url: str
    secrets: list[dict[str, Any]]
    headers: dict[str, str]
    rate_limit: int | None
    enabled: bool
    failing_since: datetime | None
    consecutive_failures: int
    circuit_open_until: datetime | None
    circuit_probe_id: int | None
    circuit_probe_until: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Claimed:
        """Build from a claim row, ignoring columns the attempt does not use."""
        return cls(**{f.name: row[f.name] for f in _CLAIMED_FIELDS})


_CLAIMED_FIELDS = fields(Claimed)

#: The delivery's status after each action; "dead" and "disable" end it.
_STATUS_AFTER: dict[str, Status] = {"succeed": "succeeded", "retry": "pending", "defer": "pending"}


@dataclass(frozen=True)
class Release:
    """Put a delivery back without an attempt: later (`next_attempt_at`) or dead.

    `circuit_wait` parks it until its endpoint's circuit closes (or it expires).
    """

    next_attempt_at: datetime | None = None
    dead_reason: str | None = None
    circuit_wait: bool = False


@dataclass(frozen=True)
class Settlement:
    """The delivery's state after an attempt, and whether its endpoint must be disabled."""

    decision: retry.Decision
    status: Status
    disable_reason: str | None = None


def admit(job: Claimed, now: datetime, max_age: float) -> Release | None:
    """Return the release of a delivery that must not be attempted, or None to go on."""
    if not job.enabled:
        return Release(dead_reason="endpoint_disabled")
    if job.tenant_id != job.endpoint_tenant:
        # Guarantee 8: never deliver across tenants, whatever created the row.
        return Release(dead_reason="tenant_mismatch")
    if (now - job.budget_started_at).total_seconds() > max_age:
        return Release(dead_reason="expired")
    return None


def defer(job: Claimed, now: datetime, seconds: float, max_age: float) -> Release:
    """Return the release of a gated delivery: later without an attempt, or dead when too old."""
    decision = retry.defer(now, seconds, job.budget_started_at, max_age)
    return Release(decision.next_attempt_at, decision.reason)


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


def settle(
    job: Claimed,
    outcome: Outcome,
    now: datetime,
    *,
    schedule: Sequence[float],
    max_age: float,
    disable_after: float,
    jitter: Callable[[float], float] = retry.default_jitter,
) -> Settlement:
    """Return what the attempt with this outcome does to the delivery and its endpoint."""
    decision = retry.decide(
        outcome,
        attempts_made=job.spent + 1,
        schedule=schedule,
        created_at=job.budget_started_at,
        now=now,
        max_age=max_age,
        jitter=jitter,
    )
    status = _STATUS_AFTER.get(decision.action, "dead")
    disable = None
    if decision.action == "disable":
        disable = f"receiver answered {outcome.status_code} Gone"
    elif (
        outcome.kind is Kind.FAILED
        and job.failing_since is not None
        and (now - job.failing_since).total_seconds() >= disable_after
    ):
        disable = f"failing with no success since {job.failing_since:%Y-%m-%d %H:%M:%S} UTC"
    return Settlement(decision, status, disable)


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
