"""Say whether an endpoint would take an event: `webhooks endpoint test-filter` and its route."""

from __future__ import annotations

from dataclasses import dataclass

from producers.names import pattern_matches
from worker.ops.endpoint import Endpoint
from worker.ops.validation import check_test_event_type
from worker.policy import filters

#: The event type tested when none is given and the endpoint names no plain type.
DEFAULT_EVENT_TYPE = "webhooks.test"


@dataclass(frozen=True)
class Verdict:
    """Whether the relay would create a delivery, and if not why (the first reason found)."""

    endpoint_id: str
    event_type: str
    delivered: bool
    reason: str | None


def default_event_type(ep: Endpoint) -> str:
    """Return the type tested when none is given: the endpoint's first plain event type."""
    plain = [t for t in ep.event_types or () if "*" not in t]
    return plain[0] if plain else DEFAULT_EVENT_TYPE


def verdict(ep: Endpoint, data: object, event_type: str | None = None) -> Verdict:
    """Decide as the relay's fan-out does: enabled, event type subscribed, filter passed.

    The filter is the same language the relay evaluates (`worker.policy.filters`); the
    event's tenant is the endpoint's own (an event is never delivered across tenants).
    """
    kind = check_test_event_type(event_type) if event_type is not None else None
    kind = kind or default_event_type(ep)

    def no(reason: str) -> Verdict:
        return Verdict(ep.id, kind, False, reason)

    if not ep.enabled:
        return no(f"the endpoint is disabled ({ep.disabled_reason or 'no reason given'})")
    if ep.event_types is not None and not any(pattern_matches(p, kind) for p in ep.event_types):
        return no(
            f"event type {kind} is not subscribed (the endpoint takes {', '.join(ep.event_types)})"
        )
    if ep.filter is not None:
        passed, why = filters.evaluate(filters.parse(ep.filter), kind, ep.tenant_id, data)
        if not passed:
            return no(f"the filter does not pass: {why}")
    return Verdict(ep.id, kind, True, None)
