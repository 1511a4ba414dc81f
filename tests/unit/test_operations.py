"""Specify the operational events' payloads and the bound on dead-letter announcements."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.policy import operations

DIED = datetime(2026, 1, 1, tzinfo=UTC)
ENDPOINT = {"id": "ep-1", "tenant_id": "acme", "url": "https://acme.example/hook"}


def letter(n: int, endpoint: str = "ep-1", reason: str = "expired") -> dict[str, object]:
    return {
        "delivery_id": n,
        "tenant_id": "acme",
        "event_id": f"evt-{n}",
        "endpoint_id": endpoint,
        "event_type": "order.paid",
        "reason": reason,
        "attempts": 3,
        "died_at": DIED,
        "url": "https://acme.example/hook",
    }


def test_dead_letters_make_one_event_per_endpoint_and_reason_listing_at_most_a_hundred() -> None:
    rows = [letter(n) for n in range(250)]
    rows += [letter(1000, reason="endpoint_disabled"), letter(2000, endpoint="ep-2")]
    events = operations.deliveries_dead(rows)
    assert len(events) == 3
    assert {e.event_type for e in events} == {operations.DELIVERY_DEAD}
    big = next(e.payload for e in events if e.payload["count"] == 250)
    assert big["endpoint_id"] == "ep-1" and big["reason"] == "expired"
    assert len(big["dead_letters"]) == operations.MAX_LISTED
    assert big["dead_letters"][0] == {
        "delivery_id": 0,
        "event_id": "evt-0",
        "event_type": "order.paid",
        "attempts": 3,
        "died_at": DIED.isoformat(),
    }


def test_endpoint_events_name_the_endpoint_and_what_happened() -> None:
    disabled = operations.endpoint_disabled({**ENDPOINT, "disabled_at": DIED}, "gone", 7)
    assert disabled.event_type == "webhooks.endpoint.disabled"
    assert disabled.payload == {
        "endpoint_id": "ep-1",
        "tenant_id": "acme",
        "url": "https://acme.example/hook",
        "reason": "gone",
        "disabled_at": DIED.isoformat(),
        "dead_lettered": 7,
    }
    opened = operations.circuit_opened(ENDPOINT, 5, DIED)
    assert opened.payload["consecutive_failures"] == 5
    assert opened.payload["probe_at"] == DIED.isoformat()
    recovered = operations.recovered(ENDPOINT, 12, circuit_was_open=True)
    assert recovered.payload["failures_before"] == 12 and recovered.payload["circuit_was_open"]


def test_nothing_is_said_about_the_operations_tenant_itself() -> None:
    assert operations.concerns("acme", "operations")
    assert not operations.concerns("operations", "operations")
