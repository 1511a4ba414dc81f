"""Specify an endpoint's slow-start window: how many requests one process sends it at once."""

from __future__ import annotations

import pytest

from worker.policy.outcome import ErrorKind, Kind, Outcome
from worker.policy.window import SLOW_SECONDS, START, Window, narrows, widens

OK = Outcome(Kind.SUCCEEDED, 200)
TIMEOUT = Outcome(Kind.FAILED, None, ErrorKind.TIMEOUT, "timed out")


@pytest.mark.parametrize(
    ("outcome", "narrow", "widen"),
    [
        (OK, False, True),
        (Outcome(Kind.GONE, 410, ErrorKind.GONE), False, True),
        (Outcome(Kind.FAILED, 400, ErrorKind.HTTP_STATUS), False, True),
        (Outcome(Kind.FAILED, 500, ErrorKind.HTTP_STATUS), False, False),
        (Outcome(Kind.THROTTLED, 429, ErrorKind.THROTTLED), True, False),
        (Outcome(Kind.THROTTLED, 503, ErrorKind.THROTTLED), True, False),
        (TIMEOUT, True, False),
        (Outcome(Kind.FAILED, None, ErrorKind.CONNECT, "refused"), True, False),
        (Outcome(Kind.FAILED, None, ErrorKind.PROTOCOL, "reset"), True, False),
        (Outcome(Kind.FAILED, None, ErrorKind.TLS, "bad certificate"), False, False),
        (Outcome(Kind.FAILED, None, ErrorKind.BLOCKED, "private address"), False, False),
    ],
)
def test_what_an_outcome_says_of_the_receivers_capacity(
    outcome: Outcome, narrow: bool, widen: bool
) -> None:
    assert (narrows(outcome), widens(outcome)) == (narrow, widen)


def test_an_endpoint_not_heard_from_starts_narrow_and_counts_as_slow() -> None:
    window = Window()
    assert window.slow
    assert window.limit(256) == START
    assert window.share(256) == 128


def test_each_answer_widens_by_one_so_it_doubles_each_round_trip() -> None:
    window = Window()
    for _ in range(START):  # one round trip: every request in flight answered
        window.answered(OK, 0.1, 256)
    assert window.limit(256) == 2 * START
    for _ in range(1000):
        window.answered(OK, 0.1, 256)
    assert window.limit(256) == 256  # up to the process's ceiling, no further
    assert window.share(256) == 256


def test_a_sign_of_overload_halves_it_but_never_below_the_start() -> None:
    window = Window(width=100, latency=0.1)
    window.answered(TIMEOUT, 0.1, 256)
    assert window.width == 50
    for _ in range(10):
        window.answered(TIMEOUT, 0.1, 256)
    assert window.width == START


def test_a_500_leaves_the_width_alone() -> None:
    window = Window(width=100, latency=0.1)
    window.answered(Outcome(Kind.FAILED, 500, ErrorKind.HTTP_STATUS), 0.1, 256)
    assert window.width == 100


def test_a_slow_endpoint_keeps_at_most_half_the_slots_however_wide() -> None:
    window = Window(width=256, latency=0.1)
    for _ in range(20):
        window.answered(OK, SLOW_SECONDS * 3, 256)
    assert window.slow
    assert window.limit(256) == 128
    assert window.share(256) == 128
    assert Window(width=1000).limit(1) == 1
