"""Specify an endpoint's shared circuit: how a batch's outcomes change its stored health."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.test_plan import job
from worker.policy.breaker import CircuitPolicy, Health, circuit_allows, fold_health, needs_health
from worker.policy.outcome import Kind

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = CircuitPolicy(failures=3, cooldown=30, max_cooldown=100)
OK, FAIL, SLOW = Kind.SUCCEEDED, Kind.FAILED, Kind.THROTTLED


def fold(before: Health, *kinds: Kind, probe: int | None = None, policy: CircuitPolicy = POLICY):
    results = [(probe if probe is not None and i == 0 else 100 + i, k) for i, k in enumerate(kinds)]
    return fold_health(before, results, NOW, policy)


def opened(failures: int = 3, cooldown: float = 30, probe: int | None = None) -> Health:
    return Health(
        failures,
        NOW - timedelta(minutes=1),
        NOW,
        cooldown,
        probe,
        NOW + timedelta(seconds=60) if probe else None,
    )


def test_failures_below_the_threshold_count_and_keep_it_closed() -> None:
    change = fold(Health(), FAIL, FAIL)
    assert change.health.consecutive_failures == 2
    assert change.health.failing_since == NOW
    assert not change.health.is_open and not change.opened


def test_the_failure_reaching_the_threshold_opens_it_for_the_cooldown() -> None:
    change = fold(Health(consecutive_failures=2, failing_since=NOW), FAIL)
    assert change.opened
    assert change.health.circuit_open_until == NOW + timedelta(seconds=30)
    assert change.health.circuit_cooldown == 30


def test_failures_counted_across_batches_and_processes_add_up() -> None:
    first = fold(Health(), FAIL, FAIL).health
    assert fold(first, FAIL).opened


def test_a_success_resets_the_count() -> None:
    change = fold(Health(consecutive_failures=2, failing_since=NOW), OK, FAIL)
    assert change.health.consecutive_failures == 1
    assert not change.opened


def test_throttles_say_nothing_of_health() -> None:
    before = Health(consecutive_failures=2, failing_since=NOW)
    assert fold(before, SLOW, Kind.GONE).health == before


def test_a_late_failure_while_open_keeps_the_cooldown() -> None:
    before = opened()
    change = fold(before, FAIL)
    assert change.health.circuit_open_until == before.circuit_open_until
    assert change.health.consecutive_failures == 4
    assert not change.opened


def test_a_failed_probe_doubles_the_cooldown_up_to_the_cap() -> None:
    change = fold(opened(probe=7), FAIL, probe=7)
    assert change.probe_failed and not change.opened
    assert change.health.circuit_cooldown == 60
    assert change.health.circuit_open_until == NOW + timedelta(seconds=60)
    assert change.health.circuit_probe_id is None
    capped = fold(opened(cooldown=60, probe=7), FAIL, probe=7)
    assert capped.health.circuit_cooldown == 100


def test_a_successful_probe_closes_it_and_recovers() -> None:
    change = fold(opened(probe=7), OK, probe=7)
    assert change.closed and change.recovered
    assert change.health == Health()


def test_a_throttled_probe_gives_its_turn_back_for_one_more_cooldown() -> None:
    change = fold(opened(probe=7), SLOW, probe=7)
    assert change.health.circuit_probe_id is None
    assert change.health.circuit_open_until == NOW + timedelta(seconds=30)
    assert change.health.circuit_cooldown == 30


def test_breaker_off_counts_but_never_opens() -> None:
    off = CircuitPolicy(failures=0)
    change = fold(Health(), *([FAIL] * 50), policy=off)
    assert change.health.consecutive_failures == 50
    assert not change.health.is_open
    # ... and a success after many failures is still a recovery.
    assert fold(change.health, OK, policy=off).recovered


def test_a_success_after_a_few_failures_is_no_recovery() -> None:
    assert not fold(Health(consecutive_failures=2, failing_since=NOW), OK).recovered


@pytest.mark.parametrize(
    ("circuit", "kinds", "needed"),
    [
        ({}, [OK, OK, SLOW], False),
        ({}, [OK, FAIL], True),
        ({"consecutive_failures": 1}, [OK], True),
        ({"circuit_open_until": NOW}, [OK], True),
    ],
)
def test_only_failures_or_unhealthy_endpoints_need_the_row_lock(
    circuit: dict[str, object], kinds: list[Kind], needed: bool
) -> None:
    assert needs_health(replace(job(), **circuit), kinds) is needed


def test_an_open_circuit_lets_only_its_probe_through_while_its_turn_lasts() -> None:
    closed = job()
    assert circuit_allows(closed, NOW)
    held = replace(closed, circuit_open_until=NOW, circuit_probe_id=None)
    assert not circuit_allows(held, NOW)
    probe = replace(held, circuit_probe_id=closed.id, circuit_probe_until=NOW + timedelta(1))
    assert circuit_allows(probe, NOW)
    assert not circuit_allows(replace(probe, circuit_probe_id=closed.id + 1), NOW)
    assert not circuit_allows(replace(probe, circuit_probe_until=NOW), NOW)


def test_failing_since_starts_at_the_first_failure_after_a_success() -> None:
    long_ago = NOW - timedelta(days=2)
    kept = fold(Health(consecutive_failures=1, failing_since=long_ago), FAIL)
    assert kept.health.failing_since == long_ago
    again = fold(Health(consecutive_failures=1, failing_since=long_ago), OK, FAIL)
    assert again.health.failing_since == NOW
    assert fold(Health(consecutive_failures=1, failing_since=long_ago), FAIL, OK).health == Health()
