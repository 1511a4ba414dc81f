"""Specify the per-process in-flight limiter."""

from __future__ import annotations

import threading

import pytest

from worker.policy.breaker import InFlightLimiter


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
