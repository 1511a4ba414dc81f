"""The portal's links and sessions (only token hashes stored), and what only its pages read.

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import psycopg

from worker.store import queries
from worker.store.endpoints import Health
from worker.store.rows import many, one, run


@dataclass(frozen=True)
class Link:
    """A portal link as operators see it (never the token itself)."""

    id: int
    tenant_id: str | None
    read_only: bool
    secrets: bool
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    created_by: str

    @property
    def admin(self) -> bool:
        """Tell whether the link opens every tenant (with a tenant switcher)."""
        return self.tenant_id is None


@dataclass(frozen=True)
class Session:
    """A live portal session: who it is for and what it may do."""

    id: int
    link_id: int
    tenant_id: str | None
    admin: bool
    read_only: bool
    secrets: bool
    expires_at: datetime


@dataclass(frozen=True)
class _Revoked(Link):
    sessions_revoked: int = 0


@dataclass(frozen=True)
class PublishedType:
    """An event type a tenant published lately, with its latest event."""

    event_type: str
    id: uuid.UUID
    payload: Any
    created_at: datetime


@dataclass(frozen=True)
class Hour:
    """A tenant's attempts in one hour, and how many succeeded."""

    hour: datetime
    attempts: int
    ok: int


@dataclass(frozen=True)
class _Tenant:
    tenant_id: str


def create_link(conn: psycopg.Connection[Any], params: dict[str, Any]) -> Link:
    """Store a link (the parameters of queries.CREATE_PORTAL_LINK); return it."""
    row = one(conn, Link, queries.CREATE_PORTAL_LINK, params)
    assert row is not None
    return row


def forget_links(conn: psycopg.Connection[Any], keep: float) -> None:
    """Delete links (and their sessions) ended more than ``keep`` seconds ago."""
    run(conn, queries.FORGET_PORTAL_LINKS, {"keep": keep})


def use_link(conn: psycopg.Connection[Any], hashed: str) -> Link | None:
    """Spend the live, unused link with this hash; None when there is none."""
    return one(conn, Link, queries.USE_PORTAL_LINK, {"hash": hashed})


def create_session(conn: psycopg.Connection[Any], params: dict[str, Any]) -> Session:
    """Store a session (the parameters of queries.CREATE_PORTAL_SESSION); return it."""
    row = one(conn, Session, queries.CREATE_PORTAL_SESSION, params)
    assert row is not None
    return row


def live_session(conn: psycopg.Connection[Any], hashed: str) -> Session | None:
    """Return the live session with this hash, or None."""
    return one(conn, Session, queries.LIVE_PORTAL_SESSION, {"hash": hashed})


def end_session(conn: psycopg.Connection[Any], hashed: str) -> None:
    """Revoke the session with this hash."""
    run(conn, queries.END_PORTAL_SESSION, {"hash": hashed})


def revoke_link(conn: psycopg.Connection[Any], link_id: int) -> tuple[Link, int] | None:
    """Revoke a link and its sessions; return it and how many sessions ended, or None."""
    row = one(conn, _Revoked, queries.REVOKE_PORTAL_LINK, {"id": link_id})
    if row is None:
        return None
    link = Link(**{f.name: getattr(row, f.name) for f in fields(Link)})
    return link, row.sessions_revoked


def tenants(conn: psycopg.Connection[Any], limit: int) -> list[str]:
    """Return the tenants that have endpoints, in order."""
    return [r.tenant_id for r in many(conn, _Tenant, queries.PORTAL_TENANTS, {"limit": limit})]


def event_types(conn: psycopg.Connection[Any], tenant_id: str, scan: int) -> list[PublishedType]:
    """Return the types among the tenant's newest ``scan`` events, each with its latest."""
    params = {"tenant": tenant_id, "scan": scan}
    return many(conn, PublishedType, queries.EVENT_TYPES_PUBLISHED, params)


def hourly(conn: psycopg.Connection[Any], tenant_id: str) -> list[Hour]:
    """Return the tenant's attempts of the last 24 hours by hour."""
    return many(conn, Hour, queries.DELIVERIES_BY_HOUR, {"tenant": tenant_id})


def endpoint_health(conn: psycopg.Connection[Any], endpoint_id: str, tenant_id: str) -> Health:
    """Return one of the tenant's endpoints' last 24 hours ."""
    params = {"id": endpoint_id, "tenant": tenant_id}
    row = one(conn, Health, queries.PORTAL_ENDPOINT_HEALTH, params)
    assert row is not None  # an aggregate: always one row
    return row.rated()
