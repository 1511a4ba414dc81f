"""Decide, per claimed delivery, what the engine does: pure functions over values, no I/O.

Before the attempt, `admit` kills what must not be sent (guarantee 8: tenants; guarantee 3:
age), and `defer` puts a gated delivery back without spending an attempt (an open circuit's
hold is `worker.policy.breaker`). After it, `settle` turns the outcome into the delivery's
new state, and says when the endpoint must be disabled (410 Gone, or failing with no success
for too long).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from worker.policy import retry
from worker.policy.outcome import Kind, Outcome

__all__ = [
    "Claimed",
    "Release",
    "Settlement",
    "admit",
    "defer",
    "settle",
]

Status = Literal["pending", "succeeded", "dead"]


@dataclass(frozen=True)
class Claimed:
    """A claimed delivery with what its attempt needs (a row of `worker.store.engine.claim`)."""

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
    #: Null unless the endpoint is ordered: the event's ordering key, ``""`` for none.
    ordering_key: str | None = None
    #: Ordered only: an earlier delivery of the key is pending, or an earlier event of the
    #: key is not fanned out yet (`worker.policy.ordering`).
    ahead_pending: bool = False
    #: Ordered only: an earlier delivery of the key is dead, neither replayed nor discarded.
    ahead_dead: bool = False


#: The delivery's status after each action; "dead" and "disable" end it.
_STATUS_AFTER: dict[str, Status] = {"succeed": "succeeded", "retry": "pending", "defer": "pending"}


@dataclass(frozen=True)
class Release:
    """Put a delivery back without an attempt: later (`next_attempt_at`) or dead.

    `circuit_wait` parks it until its endpoint's circuit closes (or it expires);
    `order_wait` until the delivery before it in its ordering key finishes (or it expires).
    """

    next_attempt_at: datetime | None = None
    dead_reason: str | None = None
    circuit_wait: bool = False
    order_wait: bool = False


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
