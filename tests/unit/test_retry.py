"""Specify the retry decision after each attempt, and deferrals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.policy.outcome import Kind, Outcome
from worker.policy.retry import Decision, decide, default_jitter, defer
from worker.settings import DEFAULT_SCHEDULE

CREATED = datetime(2024, 1, 1, tzinfo=UTC)
SCHEDULE = (0.0, 5.0, 300.0, 1800.0)
DAY = 86400.0

OK = Outcome(Kind.SUCCEEDED, 200)
FAIL = Outcome(Kind.FAILED, 500, "http_status", "HTTP 500")
GONE = Outcome(Kind.GONE, 410, "gone", "HTTP 410 Gone")
THROTTLED = Outcome(Kind.THROTTLED, 503, "throttled", "HTTP 503")


def throttled(retry_after: float) -> Outcome:
    return Outcome(Kind.THROTTLED, 429, "throttled", "HTTP 429", retry_after)


def at(seconds: float) -> datetime:
    return CREATED + timedelta(seconds=seconds)


def no_jitter(delay: float) -> float:
    return delay


def plus_ten_percent(delay: float) -> float:
    return delay * 1.1


@pytest.mark.parametrize(
    ("outcome", "attempts_made", "now", "max_age", "expected"),
    [
        # Success and gone end the delivery whatever the count.
        (OK, 1, at(0), DAY, Decision("succeed")),
        (OK, 4, at(2000), DAY, Decision("succeed")),
        (GONE, 2, at(10), DAY, Decision("disable", reason="endpoint_disabled")),
        # A failure waits the next delay of the schedule.
        (FAIL, 1, at(0), DAY, Decision("retry", at(5))),
        (FAIL, 2, at(6), DAY, Decision("retry", at(306))),
        (FAIL, 3, at(310), DAY, Decision("retry", at(2110))),
        # n delays allow n attempts: the fourth failure of a four-delay schedule is the last.
        (FAIL, 4, at(2200), DAY, Decision("dead", reason="attempts_exhausted")),
        (FAIL, 9, at(2200), DAY, Decision("dead", reason="attempts_exhausted")),
        # A retry that would land past the maximum age dies now instead.
        (FAIL, 2, at(6), 305.0, Decision("dead", reason="expired")),
        (FAIL, 2, at(6), 306.0, Decision("retry", at(306))),
        # Throttling spends no attempt: it waits Retry-After, or the next scheduled delay.
        (throttled(30), 1, at(0), DAY, Decision("defer", at(30), spends_attempt=False)),
        (THROTTLED, 2, at(6), DAY, Decision("defer", at(306), spends_attempt=False)),
        (THROTTLED, 4, at(2200), DAY, Decision("defer", at(4000), spends_attempt=False)),
        (THROTTLED, 7, at(2200), DAY, Decision("defer", at(4000), spends_attempt=False)),
        # ... never less than a second, and a first throttle waits the second slot, not 0s.
        (throttled(0), 1, at(0), DAY, Decision("defer", at(1), spends_attempt=False)),
        (THROTTLED, 1, at(0), DAY, Decision("defer", at(5), spends_attempt=False)),
        # ... and it dies once the deferral would outlive the maximum age.
        (
            throttled(3600),
            1,
            at(DAY - 60),
            DAY,
            Decision("dead", reason="expired", spends_attempt=False),
        ),
    ],
)
def test_decide(
    outcome: Outcome, attempts_made: int, now: datetime, max_age: float, expected: Decision
) -> None:
    decision = decide(
        outcome,
        attempts_made=attempts_made,
        schedule=SCHEDULE,
        created_at=CREATED,
        now=now,
        max_age=max_age,
        jitter=no_jitter,
    )
    assert decision == expected


def test_a_zero_first_delay_throttled_on_the_first_slot_waits_at_least_a_second() -> None:
    decision = decide(
        THROTTLED,
        attempts_made=1,
        schedule=(0.0, 0.0),
        created_at=CREATED,
        now=at(0),
        max_age=DAY,
        jitter=no_jitter,
    )
    assert decision == Decision("defer", at(1), spends_attempt=False)


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (FAIL, Decision("retry", at(5.5))),
        (THROTTLED, Decision("defer", at(5.5), spends_attempt=False)),
        # The receiver's own Retry-After is honoured exactly.
        (throttled(30), Decision("defer", at(30), spends_attempt=False)),
    ],
)
def test_jitter_applies_to_scheduled_delays_only(outcome: Outcome, expected: Decision) -> None:
    decision = decide(
        outcome,
        attempts_made=1,
        schedule=SCHEDULE,
        created_at=CREATED,
        now=at(0),
        max_age=DAY,
        jitter=plus_ten_percent,
    )
    assert decision == expected


def test_the_default_schedule_allows_ten_attempts() -> None:
    now = CREATED
    for attempts_made in range(1, len(DEFAULT_SCHEDULE)):
        decision = decide(
            FAIL,
            attempts_made=attempts_made,
            schedule=DEFAULT_SCHEDULE,
            created_at=CREATED,
            now=now,
            max_age=4 * DAY,
            jitter=no_jitter,
        )
        assert decision.action == "retry", attempts_made
        assert decision.next_attempt_at is not None
        now = decision.next_attempt_at
    last = decide(
        FAIL,
        attempts_made=len(DEFAULT_SCHEDULE),
        schedule=DEFAULT_SCHEDULE,
        created_at=CREATED,
        now=now,
        max_age=4 * DAY,
        jitter=no_jitter,
    )
    assert last == Decision("dead", reason="attempts_exhausted")


@pytest.mark.parametrize(
    ("attempts_made", "schedule"),
    [(0, SCHEDULE), (1, ())],
)
def test_decide_rejects_impossible_inputs(attempts_made: int, schedule: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        decide(
            FAIL,
            attempts_made=attempts_made,
            schedule=schedule,
            created_at=CREATED,
            now=at(0),
            max_age=DAY,
        )


@pytest.mark.parametrize(
    ("now", "seconds", "max_age", "expected"),
    [
        (at(0), 30.0, DAY, Decision("defer", at(30), spends_attempt=False)),
        (at(100), 0.5, DAY, Decision("defer", at(100.5), spends_attempt=False)),
        (at(100), -3.0, DAY, Decision("defer", at(100), spends_attempt=False)),
        (at(DAY - 10), 10.0, DAY, Decision("defer", at(DAY), spends_attempt=False)),
        (at(DAY - 10), 11.0, DAY, Decision("dead", reason="expired", spends_attempt=False)),
        (at(DAY + 1), 0.0, DAY, Decision("dead", reason="expired", spends_attempt=False)),
    ],
)
def test_defer(now: datetime, seconds: float, max_age: float, expected: Decision) -> None:
    assert defer(now, seconds, CREATED, max_age) == expected


def test_default_jitter_stays_within_twenty_percent() -> None:
    values = [default_jitter(100.0) for _ in range(1000)]
    assert all(80.0 <= value <= 120.0 for value in values)
    assert len(set(values)) > 1
    assert default_jitter(0.0) == 0.0
