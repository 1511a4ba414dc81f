"""The bound on slow calls: a few per tenant, a few in all, and when to come back."""

from __future__ import annotations

import pytest

from worker.api.slots import TESTS_IN_ALL, TESTS_PER_TENANT, Full, Slots, endpoint_tests


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_holds_at_most_its_share_and_hears_when_one_frees() -> None:
    clock = Clock()
    slots = Slots(2, 5, 30.0, clock=clock)
    with slots.taken("acme"):
        clock.now += 10
        with slots.taken("acme"):
            with pytest.raises(Full) as refused, slots.taken("acme"):
                pass  # pragma: no cover - refused before the block
            # The oldest of acme's calls ends by 100 + 30: 20 s from now.
            assert refused.value.retry_after == 20
            assert "tenant" in refused.value.detail
            with slots.taken("globex"):
                assert slots.in_use("acme") == 2 and slots.in_use() == 3
    assert slots.in_use() == 0


def test_every_key_together_holds_at_most_the_total() -> None:
    clock = Clock()
    slots = Slots(1, 2, 30.0, clock=clock)
    with slots.taken("a"), slots.taken("b"):
        with pytest.raises(Full) as refused, slots.taken("c"):
            pass  # pragma: no cover
        assert "in flight" in refused.value.detail and refused.value.retry_after == 30
    with slots.taken("c"):
        assert slots.in_use("c") == 1


def test_retry_after_is_at_least_a_second_and_a_slot_is_given_back_on_error() -> None:
    clock = Clock()
    slots = Slots(1, 1, 30.0, clock=clock)
    with slots.taken("a"):
        clock.now += 45  # past its deadline, still held
        with pytest.raises(Full) as refused, slots.taken("a"):
            pass  # pragma: no cover
        assert refused.value.retry_after == 1
    with pytest.raises(RuntimeError), slots.taken("a"):
        raise RuntimeError("the call failed")
    assert slots.in_use() == 0


def test_endpoint_tests_stay_below_the_api_pool() -> None:
    slots = endpoint_tests(30.0)
    assert (slots.per_key, slots.total) == (TESTS_PER_TENANT, TESTS_IN_ALL)
    assert 1 < TESTS_PER_TENANT < TESTS_IN_ALL < 10
    assert slots.hold > 30.0
    with pytest.raises(ValueError):
        Slots(3, 2, 1.0)
