"""Operational events: what the product tells operators about itself, as ordinary events.

They are published into the tenant WEBHOOKS_OPERATIONS_TENANT in the very transaction that
makes the change (an endpoint disabled, a circuit opened, an endpoint recovered), or that
counts the dead letters (the relay), and delivered by the product's own pipeline: signed,
retried and recorded like any event. An operator subscribes by adding an endpoint in that
tenant. Nothing is said about the operations tenant's own endpoints, so a failing
operations receiver cannot feed itself.

Pure: these functions build the events; the callers publish them. What they are given are
typed dicts (`Named`, `Disabled`, `DeadLetter`): their keys are checked by mypy, and a test
writes them by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

__all__ = [
    "CIRCUIT_OPENED",
    "DELIVERY_DEAD",
    "ENDPOINT_DISABLED",
    "MAX_LISTED",
    "MAX_PAYLOAD_BYTES",
    "RECOVERED",
    "TYPES",
    "Announcement",
    "DeadLetter",
    "Disabled",
    "Named",
    "circuit_opened",
    "deliveries_dead",
    "endpoint_disabled",
    "recovered",
]

ENDPOINT_DISABLED = "webhooks.endpoint.disabled"
CIRCUIT_OPENED = "webhooks.endpoint.circuit_opened"
RECOVERED = "webhooks.endpoint.recovered"
DELIVERY_DEAD = "webhooks.delivery.dead"
TYPES = (ENDPOINT_DISABLED, CIRCUIT_OPENED, RECOVERED, DELIVERY_DEAD)

#: Dead letters listed one by one in a webhooks.delivery.dead event; `count` has them all.
MAX_LISTED = 100
#: The payload limit operational events are published under. WEBHOOKS_MAX_PAYLOAD_BYTES
#: bounds what applications publish; these events are the product's own and bounded by
#: construction (MAX_LISTED), and a low limit must not make recording an attempt, disabling
#: an endpoint or the relay's announcements fail.
MAX_PAYLOAD_BYTES = 1 << 20


@dataclass(frozen=True)
class Announcement:
    """One operational event to publish into the operations tenant."""

    event_type: str
    payload: dict[str, Any]


class Named(TypedDict):
    """An endpoint as an operational event names it."""

    id: str
    tenant_id: str
    url: str


class Disabled(Named, total=False):
    """A disabled endpoint, with when it was disabled (None or left out: not said)."""

    disabled_at: datetime | None


class DeadLetter(TypedDict):
    """A new dead letter, with what a webhooks.delivery.dead event says of it."""

    delivery_id: int
    tenant_id: str
    event_id: str
    endpoint_id: str
    event_type: str
    reason: str
    attempts: int
    died_at: datetime
    url: str


def concerns(tenant_id: str, operations_tenant: str) -> bool:
    """Return whether a change in `tenant_id` is announced (never the operations tenant's)."""
    return tenant_id != operations_tenant


def _endpoint(endpoint: Named) -> dict[str, Any]:
    return {
        "endpoint_id": str(endpoint["id"]),
        "tenant_id": endpoint["tenant_id"],
        "url": endpoint["url"],
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def endpoint_disabled(endpoint: Disabled, reason: str, dead_lettered: int) -> Announcement:
    """The endpoint was disabled (410 Gone, failing too long, or an operator)."""
    return Announcement(
        ENDPOINT_DISABLED,
        {
            **_endpoint(endpoint),
            "reason": reason,
            "disabled_at": _iso(endpoint.get("disabled_at")),
            "dead_lettered": dead_lettered,
        },
    )


def circuit_opened(endpoint: Named, failures: int, open_until: datetime | None) -> Announcement:
    """The endpoint's circuit opened: its deliveries wait for a probe to succeed."""
    return Announcement(
        CIRCUIT_OPENED,
        {
            **_endpoint(endpoint),
            "consecutive_failures": failures,
            "probe_at": _iso(open_until),
        },
    )


def recovered(endpoint: Named, failures: int, circuit_was_open: bool) -> Announcement:
    """A first success after the circuit was open or after many failures in a row."""
    return Announcement(
        RECOVERED,
        {
            **_endpoint(endpoint),
            "failures_before": failures,
            "circuit_was_open": circuit_was_open,
        },
    )


def deliveries_dead(letters: Iterable[DeadLetter]) -> list[Announcement]:
    """One event per endpoint and reason for a batch of dead letters, each listing at most
    MAX_LISTED of them, so a flood of dead letters yields a bounded number of events."""
    groups: dict[tuple[str, str], list[DeadLetter]] = {}
    for letter in letters:
        groups.setdefault((str(letter["endpoint_id"]), letter["reason"]), []).append(letter)
    out = []
    for (endpoint_id, reason), group in groups.items():
        first = group[0]
        out.append(
            Announcement(
                DELIVERY_DEAD,
                {
                    "endpoint_id": endpoint_id,
                    "tenant_id": first["tenant_id"],
                    "url": first["url"],
                    "reason": reason,
                    "count": len(group),
                    "dead_letters": [
                        {
                            "delivery_id": letter["delivery_id"],
                            "event_id": str(letter["event_id"]),
                            "event_type": letter["event_type"],
                            "attempts": letter["attempts"],
                            "died_at": _iso(letter["died_at"]),
                        }
                        for letter in group[:MAX_LISTED]
                    ],
                },
            )
        )
    return out
