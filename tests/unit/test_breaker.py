"""Specify the per-process circuit breaker and in-flight limiter."""

from __future__ import annotations

import threading

import pytest

from worker.breaker import CircuitBreaker, InFlightLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def open_circuit(breaker: CircuitBreaker, key: str = "ep", failures: int = 3) -> None:
    for _ in range(failures):
        assert breaker.allow(key) is None
        breaker.record(key, success=False)


def test_a_new_endpoint_is_allowed(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    assert breaker.allow("ep") is None
    assert not breaker.is_open("ep")


def test_failures_below_the_threshold_keep_the_circuit_closed(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    open_circuit(breaker, failures=2)
    assert breaker.allow("ep") is None


def test_a_success_resets_the_consecutive_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    open_circuit(breaker, failures=2)
    breaker.record("ep", success=True)
    open_circuit(breaker, failures=2)
    assert breaker.allow("ep") is None


def test_reaching_the_threshold_opens_for_the_cooldown(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    open_circuit(breaker)
    assert breaker.is_open("ep")
    assert breaker.allow("ep") == 30
    clock.advance(10)
    assert breaker.allow("ep") == 20
    assert breaker.open_count() == 1


def test_circuits_are_per_endpoint(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    open_circuit(breaker, "slow")
    assert breaker.allow("slow") == 30
    assert breaker.allow("fine") is None


def test_after_the_cooldown_exactly_one_probe_goes(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    open_circuit(breaker)
    clock.advance(30)
    assert breaker.allow("ep") is None  # the probe
    wait = breaker.allow("ep")
    assert wait is not None and 0 < wait <= 30


def test_a_successful_probe_closes_the_circuit(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    open_circuit(breaker)
    clock.advance(30)
    assert breaker.allow("ep") is None
    breaker.record("ep", success=True)
    assert not breaker.is_open("ep")
    assert breaker.allow("ep") is None
    assert breaker.allow("ep") is None
    # ... and the count starts again from zero.
    open_circuit(breaker, failures=2)
    assert breaker.allow("ep") is None


def test_each_failed_probe_doubles_the_cooldown_up_to_the_cap(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    open_circuit(breaker)
    waits = []
    for _ in range(7):
        clock.advance(breaker.allow("ep") or 0)
        assert breaker.allow("ep") is None
        breaker.record("ep", success=False)
        waits.append(breaker.allow("ep"))
    assert waits == [60, 120, 240, 480, 600, 600, 600]


def test_a_late_failure_while_open_does_not_extend_the_cooldown(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    for _ in range(4):
        assert breaker.allow("ep") is None  # four requests in flight at once
    for _ in range(3):
        breaker.record("ep", success=False)
    clock.advance(10)
    breaker.record("ep", success=False)  # the fourth finishes late
    assert breaker.allow("ep") == 20


def test_a_lost_probe_is_replaced_after_the_probe_timeout(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock, probe_timeout=60)
    open_circuit(breaker)
    clock.advance(30)
    assert breaker.allow("ep") is None  # this probe never records a result
    clock.advance(59)
    assert breaker.allow("ep") == 1
    clock.advance(1)
    assert breaker.allow("ep") is None


def test_a_released_probe_lets_the_next_caller_probe(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    open_circuit(breaker)
    clock.advance(30)
    assert breaker.allow("ep") is None
    assert breaker.allow("ep") is not None
    breaker.release("ep")  # e.g. the receiver answered 429: alive, but no verdict
    assert breaker.allow("ep") is None
    assert breaker.is_open("ep")


def test_release_of_a_closed_circuit_does_nothing(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    breaker.release("ep")
    assert breaker.allow("ep") is None


def test_only_one_thread_gets_the_probe(clock: FakeClock) -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=30, clock=clock)
    breaker.record("ep", success=False)
    clock.advance(30)
    allowed: list[bool] = []
    barrier = threading.Barrier(16)

    def ask() -> None:
        barrier.wait()
        allowed.append(breaker.allow("ep") is None)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 0}, {"cooldown": 0}, {"cooldown": 700.0}],
)
def test_breaker_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_limiter_refuses_beyond_the_limit_per_key() -> None:
    limiter = InFlightLimiter(2)
    assert limiter.try_acquire("slow")
    assert limiter.try_acquire("slow")
    assert not limiter.try_acquire("slow")
    assert limiter.try_acquire("fast")
    assert limiter.in_flight("slow") == 2
    limiter.release("slow")
    assert limiter.in_flight("slow") == 1
    assert limiter.try_acquire("slow")


def test_limiter_forgets_idle_keys() -> None:
    limiter = InFlightLimiter(1)
    assert limiter.try_acquire("ep")
    limiter.release("ep")
    assert limiter.in_flight("ep") == 0
    assert limiter._counts == {}


def test_limiter_rejects_a_release_without_acquire() -> None:
    limiter = InFlightLimiter(1)
    with pytest.raises(ValueError):
        limiter.release("ep")


def test_limiter_holds_under_contention() -> None:
    limiter = InFlightLimiter(3)
    barrier = threading.Barrier(20)
    results: list[bool] = []

    def take() -> None:
        barrier.wait()
        results.append(limiter.try_acquire("ep"))

    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 3


def test_limiter_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError):
        InFlightLimiter(0)
