"""The endpoint registry's rows: endpoints, their sealed secrets, health and dependents.

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg

from worker.store import queries
from worker.store.rows import many, one, run, scalar


@dataclass(frozen=True, kw_only=True)
class EndpointRow:
    """A webhooks.endpoints row: secrets and header values as stored (sealed)."""

    id: uuid.UUID
    tenant_id: str
    url: str
    description: str
    event_types: list[str] | None
    secrets: list[dict[str, Any]]
    headers: dict[str, str]
    rate_limit: int | None
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime
    consecutive_failures: int
    circuit_open_until: datetime | None
    circuit_cooldown: float | None
    circuit_probe_id: int | None
    circuit_probe_until: datetime | None
    #: The payload filter as written (worker.policy.filters); None: every payload.
    filter: dict[str, Any] | None = None
    #: Events of one ordering key are delivered one after another (worker.policy.ordering).
    ordered: bool = False
    #: Set by `disable`: how many pending deliveries it moved to the dead letters.
    dead_lettered: int = 0


@dataclass(frozen=True)
class Sealed:
    """One endpoint's stored secrets and header values, for sealing them again."""

    id: uuid.UUID
    secrets: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Health:
    """An endpoint's last 24 hours, as `webhooks endpoint health` shows them."""

    attempts_24h: int
    ok_24h: int
    last_success_at: datetime | None
    last_error: str | None
    pending: int
    dead_letters: int
    #: ok_24h / attempts_24h rounded to 4 places; None without attempts (see `rated`).
    success_rate_24h: float | None = None

    def rated(self) -> Health:
        """Return this with its success rate worked out."""
        attempts = self.attempts_24h
        return replace(
            self, success_rate_24h=round(self.ok_24h / attempts, 4) if attempts else None
        )


@dataclass(frozen=True)
class Closed:
    """What closing circuits did: endpoints matched, parked deliveries made due."""

    endpoints: int
    unparked: int


@dataclass(frozen=True)
class Dependents:
    """What goes with an endpoint when it is deleted."""

    deliveries: int
    pending: int
    dead_letters: int

    def describe(self) -> str:
        """Return e.g. ``3 deliveries (1 pending) and 2 dead letters``."""
        return (
            f"{_plural(self.deliveries, 'delivery', 'deliveries')} ({self.pending} pending) "
            f"and {_plural(self.dead_letters, 'dead letter', 'dead letters')}"
        )


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


@dataclass(frozen=True)
class _Secret:
    secret: str


def sealed_secrets(conn: psycopg.Connection[Any], prefix: str) -> list[str]:
    """Return every stored secret and header value that starts with ``prefix`` (a LIKE)."""
    return [r.secret for r in many(conn, _Secret, queries.SEALED_SECRETS, {"prefix": prefix})]


def insert(conn: psycopg.Connection[Any], params: dict[str, Any]) -> EndpointRow:
    """Insert an endpoint (the parameters of queries.INSERT_ENDPOINT); return its row."""
    row = one(conn, EndpointRow, queries.INSERT_ENDPOINT, params)
    assert row is not None
    return row


def update(conn: psycopg.Connection[Any], params: dict[str, Any]) -> EndpointRow | None:
    """Change the fields flagged ``set_<field>`` of one endpoint; return its row, or None."""
    return one(conn, EndpointRow, queries.UPDATE_ENDPOINT, params)


def enable(conn: psycopg.Connection[Any], params: dict[str, Any]) -> EndpointRow | None:
    """Enable one endpoint (``id``, ``tenant``) and forget its failing streak, or None."""
    return one(conn, EndpointRow, queries.ENABLE_ENDPOINT, params)


def get(
    conn: psycopg.Connection[Any], endpoint_id: uuid.UUID, tenant_id: str | None, *, lock: bool
) -> EndpointRow | None:
    """Return one endpoint (locked FOR UPDATE with ``lock``), or None."""
    sql = queries.LOCK_ENDPOINT if lock else queries.ENDPOINT
    return one(conn, EndpointRow, sql, {"id": endpoint_id, "tenant": tenant_id})


def list_rows(
    conn: psycopg.Connection[Any],
    tenant_id: str | None,
    after: uuid.UUID | None,
    limit: int | None,
) -> list[EndpointRow]:
    """Return endpoints by id after ``after`` (of one tenant when given)."""
    params = {"tenant": tenant_id, "after": after, "limit": limit}
    return many(conn, EndpointRow, queries.LIST_ENDPOINTS, params)


def health(conn: psycopg.Connection[Any], endpoint_id: uuid.UUID) -> Health:
    """Return the endpoint's attempts, successes and backlog of the last 24 hours."""
    row = one(conn, Health, queries.ENDPOINT_HEALTH, {"id": endpoint_id})
    assert row is not None  # an aggregate: always one row
    return row.rated()


def disable(
    conn: psycopg.Connection[Any], endpoint_id: uuid.UUID, tenant_id: str | None, reason: str
) -> EndpointRow | None:
    """Disable an endpoint and dead-letter its pending deliveries (counted in the row)."""
    params = {"id": endpoint_id, "tenant": tenant_id, "reason": reason}
    return one(conn, EndpointRow, queries.DISABLE_ENDPOINT, params)


def close_circuit(
    conn: psycopg.Connection[Any], endpoint_id: uuid.UUID | str, tenant_id: str | None
) -> Closed:
    """Close an endpoint's circuit, forget its failures, make its parked deliveries due."""
    row = one(conn, Closed, queries.CLOSE_CIRCUIT, {"id": endpoint_id, "tenant": tenant_id})
    assert row is not None  # counts: always one row
    return row


def subscribed(conn: psycopg.Connection[Any], tenant_id: str, event_type: str) -> bool:
    """Tell whether an enabled endpoint of ``tenant_id`` takes ``event_type``."""
    params = {"tenant": tenant_id, "type": event_type}
    return scalar(conn, queries.SUBSCRIBED, params) is not None


def set_secrets(conn: psycopg.Connection[Any], endpoint_id: uuid.UUID, secrets: object) -> None:
    """Replace an endpoint's stored secrets (a Jsonb list)."""
    run(conn, queries.SET_SECRETS, {"secrets": secrets, "id": endpoint_id})


def lock_all_sealed(conn: psycopg.Connection[Any]) -> list[Sealed]:
    """Lock every endpoint and return its stored secrets and headers."""
    return many(conn, Sealed, queries.LOCK_ALL_SECRETS)


def set_sealed(
    conn: psycopg.Connection[Any], endpoint_id: uuid.UUID, secrets: object, headers: object
) -> None:
    """Replace an endpoint's stored secrets and headers (Jsonb values)."""
    params = {"secrets": secrets, "headers": headers, "id": endpoint_id}
    run(conn, queries.SET_SEALED, params)


def dependents(conn: psycopg.Connection[Any], endpoint_id: uuid.UUID) -> Dependents:
    """Count an endpoint's deliveries, pending ones, and current dead letters."""
    row = one(conn, Dependents, queries.ENDPOINT_DEPENDENTS, {"id": endpoint_id})
    assert row is not None  # counts: always one row
    return row


def delete(conn: psycopg.Connection[Any], endpoint_id: uuid.UUID) -> None:
    """Delete an endpoint; its deliveries, attempts and dead letters go with it."""
    run(conn, queries.DELETE_ENDPOINT, {"id": endpoint_id})
