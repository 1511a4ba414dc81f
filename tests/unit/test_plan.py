"""The engine's per-delivery decisions, as tables: no service, no clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.policy import plan
from worker.policy.outcome import Kind, Outcome

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DAY = 86400.0
SCHEDULE = (0.0, 5.0, 300.0)


def job(**changes: Any) -> plan.Claimed:
    base = plan.Claimed(
        id=1,
        tenant_id="acme",
        attempts=0,
        spent=0,
        budget_started_at=NOW - timedelta(minutes=1),
        next_trigger="scheduled",
        event_created_at=NOW - timedelta(minutes=1),
        event_id="evt",
        event_type="invoice.paid",
        payload="{}",
        endpoint_id="ep",
        endpoint_tenant="acme",
        url="https://example.com/hook",
        secrets=[],
        headers={},
        rate_limit=None,
        enabled=True,
        failing_since=None,
        consecutive_failures=0,
        circuit_open_until=None,
        circuit_probe_id=None,
        circuit_probe_until=None,
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),
        ({"enabled": False}, plan.Release(dead_reason="endpoint_disabled")),
        ({"endpoint_tenant": "globex"}, plan.Release(dead_reason="tenant_mismatch")),
        ({"budget_started_at": NOW - timedelta(days=5)}, plan.Release(dead_reason="expired")),
        # Disabled wins over the other reasons: the replay after a fix brings it back.
        (
            {"enabled": False, "endpoint_tenant": "globex"},
            plan.Release(dead_reason="endpoint_disabled"),
        ),
    ],
)
def test_admit(changes: dict[str, Any], expected: plan.Release | None) -> None:
    assert plan.admit(job(**changes), NOW, max_age=4 * DAY) == expected


def test_defer_puts_the_delivery_back_later_without_an_attempt() -> None:
    assert plan.defer(job(), NOW, 30.0, max_age=4 * DAY) == plan.Release(
        NOW + timedelta(seconds=30)
    )


def test_a_deferral_past_the_maximum_age_kills_the_delivery() -> None:
    old = job(budget_started_at=NOW - timedelta(days=4) + timedelta(seconds=10))
    assert plan.defer(old, NOW, 30.0, max_age=4 * DAY) == plan.Release(dead_reason="expired")


def settle(claimed: plan.Claimed, outcome: Outcome) -> plan.Settlement:
    """Settle at NOW with the test schedule, 4-day age, 5-day disable, no jitter."""
    return plan.settle(
        claimed,
        outcome,
        NOW,
        schedule=SCHEDULE,
        max_age=4 * DAY,
        disable_after=5 * DAY,
        jitter=lambda d: d,
    )


OK = Outcome(Kind.SUCCEEDED, 200)
FAILED = Outcome(Kind.FAILED, 500, "http_status", "HTTP 500")
GONE = Outcome(Kind.GONE, 410, "gone", "HTTP 410 Gone")
THROTTLED = Outcome(Kind.THROTTLED, 429, "throttled", "HTTP 429", 60.0)


@pytest.mark.parametrize(
    ("changes", "outcome", "status", "action", "spends", "disables"),
    [
        ({}, OK, "succeeded", "succeed", True, False),
        ({}, FAILED, "pending", "retry", True, False),
        ({"spent": 2}, FAILED, "dead", "dead", True, False),
        ({}, THROTTLED, "pending", "defer", False, False),
        ({}, GONE, "dead", "disable", True, True),
        # Failing with no success for longer than disable_after disables the endpoint.
        ({"failing_since": NOW - timedelta(days=6)}, FAILED, "pending", "retry", True, True),
        ({"failing_since": NOW - timedelta(days=1)}, FAILED, "pending", "retry", True, False),
        # A success never disables, however long the endpoint was failing.
        ({"failing_since": NOW - timedelta(days=6)}, OK, "succeeded", "succeed", True, False),
    ],
)
def test_settle(
    changes: dict[str, Any],
    outcome: Outcome,
    status: str,
    action: str,
    spends: bool,
    disables: bool,
) -> None:
    s = settle(job(**changes), outcome)
    assert (s.status, s.decision.action, s.decision.spends_attempt) == (status, action, spends)
    assert (s.disable_reason is not None) is disables


def test_a_retry_is_scheduled_by_the_schedule_slot_of_the_next_attempt() -> None:
    s = settle(job(spent=1), FAILED)
    assert s.decision.next_attempt_at == NOW + timedelta(seconds=300)
