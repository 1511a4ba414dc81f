"""One endpoint as operators see it, and what deleting it takes along (`Dependents`, a row
of worker.store.endpoints)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.store.endpoints import Dependents, EndpointRow

__all__ = ["UNCHANGED", "Dependents", "Endpoint", "Unchanged"]


class Unchanged(enum.Enum):
    """The type of `UNCHANGED`: an argument of `Endpoints.update` that was not given."""

    UNCHANGED = "unchanged"


#: Keep the current value (where None has a meaning of its own: all types, no limit).
UNCHANGED = Unchanged.UNCHANGED


@dataclass(frozen=True)
class Endpoint:
    """An endpoint as operators see it (secrets are never part of it).

    ``headers`` are the custom headers as shown: values redacted (`worker.policy.redaction`),
    except in the endpoint `Endpoints.add` and `Endpoints.update` return, which shows in full
    the headers the caller has just given.
    """

    id: str
    tenant_id: str
    url: str
    description: str
    event_types: tuple[str, ...] | None
    headers: dict[str, str]
    rate_limit: int | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    created_at: datetime
    secrets: int
    consecutive_failures: int = 0
    #: None while the circuit is closed; while open, when the next probe may go.
    circuit_open_until: datetime | None = None
    circuit_probing: bool = False
    #: The payload filter as written (worker.policy.filters); None delivers every payload.
    filter: dict[str, Any] | None = None
    #: Events of one ordering key are delivered one after another (worker.policy.ordering).
    ordered: bool = False

    @property
    def circuit(self) -> str:
        """Return the circuit's state as operators read it."""
        if self.circuit_open_until is None:
            return "closed"
        if self.circuit_probing:
            return "probing"
        return f"open until {self.circuit_open_until:%Y-%m-%d %H:%M:%S} UTC"

    @classmethod
    def from_row(cls, row: EndpointRow, headers: Mapping[str, str]) -> Endpoint:
        """Build from a webhooks.endpoints row and its custom headers as they are shown.

        The row's own ``headers`` hold sealed values: the caller opens and redacts them.
        """
        return cls(
            id=str(row.id),
            tenant_id=row.tenant_id,
            url=row.url,
            description=row.description,
            event_types=tuple(row.event_types) if row.event_types is not None else None,
            headers=dict(headers),
            rate_limit=row.rate_limit,
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            disabled_at=row.disabled_at,
            failing_since=row.failing_since,
            created_at=row.created_at,
            secrets=len(row.secrets),
            consecutive_failures=row.consecutive_failures,
            circuit_open_until=row.circuit_open_until,
            circuit_probing=row.circuit_probe_until is not None
            and row.circuit_probe_until > datetime.now(UTC),
            filter=row.filter,
            ordered=row.ordered,
        )
