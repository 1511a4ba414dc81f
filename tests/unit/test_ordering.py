"""`worker.policy.ordering`: may an ordered delivery go now?"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.policy import plan
from worker.policy.ordering import OnDeath, Verdict, may_go, wait

GO, WAIT, BLOCKED = Verdict.GO, Verdict.WAIT, Verdict.BLOCKED


@pytest.mark.parametrize(
    ("key", "ahead_pending", "ahead_dead", "on_death", "verdict"),
    [
        # An unordered endpoint: whatever the facts say (none are gathered for it).
        (None, False, False, "continue", GO),
        (None, True, True, "block", GO),
        # Nothing ahead in the key.
        ("k", False, False, "continue", GO),
        ("k", False, False, "block", GO),
        ("", False, False, "block", GO),  # no key: the endpoint's events as one sequence
        # Something earlier is pending, or not fanned out yet: wait, whatever the mode.
        ("k", True, False, "continue", WAIT),
        ("k", True, False, "block", WAIT),
        ("", True, False, "continue", WAIT),
        ("k", True, True, "block", WAIT),
        ("k", True, True, "continue", WAIT),
        # The head died: continue goes on, block holds the key.
        ("k", False, True, "continue", GO),
        ("k", False, True, "block", BLOCKED),
        ("", False, True, "block", BLOCKED),
    ],
)
def test_may_go(
    key: str | None, ahead_pending: bool, ahead_dead: bool, on_death: OnDeath, verdict: Verdict
) -> None:
    assert may_go(key, ahead_pending, ahead_dead, on_death) is verdict


def test_a_waiting_delivery_is_parked_until_it_expires_without_spending_an_attempt() -> None:
    started = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    job = plan.Claimed(
        id=1,
        tenant_id="t",
        attempts=2,
        spent=1,
        budget_started_at=started,
        next_trigger="scheduled",
        event_created_at=started,
        event_id="e",
        event_type="a.b",
        payload="{}",
        endpoint_id="ep",
        endpoint_tenant="t",
        url="http://x",
        secrets=[],
        headers={},
        rate_limit=None,
        enabled=True,
        failing_since=None,
        consecutive_failures=0,
        circuit_open_until=None,
        circuit_probe_id=None,
        circuit_probe_until=None,
        ordering_key="k",
        ahead_pending=True,
    )
    release = wait(job, max_age=3600)
    assert release == plan.Release(next_attempt_at=started + timedelta(hours=1), order_wait=True)
    assert release.dead_reason is None and not release.circuit_wait
