"""Make, spend and revoke portal links and sessions: the Python API behind `webhooks
portal-link` and `POST /v1/portal-links`.

A link is ``whp_`` followed by 32 random bytes, single use and short lived; opening it
spends it and opens a session (``whs_`` + 32 random bytes, in an HttpOnly cookie) with the
link's permissions. Only SHA-256 hashes are stored, like API keys (worker.ops.apikeys).
Revoking a link revokes every session it opened.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import psycopg

from worker.errors import InvalidEndpoint, NotFound
from worker.ops.validation import check_tenant
from worker.store import queries
from worker.store.db import wrapped_errors

LINK_PREFIX = "whp_"
SESSION_PREFIX = "whs_"
#: The longest a link may wait to be opened: it travels in URLs, mail and chat.
MAX_LINK_TTL = 7 * 86400.0
#: How long ended links and sessions are kept (who made which link, for an audit).
KEEP_ENDED = 30 * 86400.0
_TOKEN = re.compile(r"wh[ps]_[A-Za-z0-9_-]{20,100}")


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


def hash_token(token: str) -> str:
    """Return the stored form of a link or session token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(session_token: str) -> str:
    """Return the session's anti-forgery token: an HMAC keyed by the session token itself,
    so it needs no storage and is worthless without the (HttpOnly) cookie."""
    return hmac.new(session_token.encode(), b"portal-csrf", hashlib.sha256).hexdigest()


def check_csrf(session_token: str, given: str | None) -> bool:
    """Tell whether ``given`` is the session's anti-forgery token (in constant time)."""
    return bool(given) and hmac.compare_digest(csrf_token(session_token), str(given))


@dataclass(frozen=True)
class Made:
    """A link just made: its id, the URL to hand to the person, and when it stops working."""

    id: int
    url: str
    expires_at: datetime


def link_url(base: str, token: str) -> str:
    """Return the URL that opens a link, under the portal's public base URL."""
    return f"{base.rstrip('/')}/enter?{urlencode({'token': token})}"


def create_link(
    conn: psycopg.Connection[Any],
    *,
    tenant_id: str | None,
    ttl: float,
    read_only: bool = False,
    reveal_secrets: bool = True,
    created_by: str = "",
) -> tuple[Link, str]:
    """Make a link for one tenant (or, with None, an admin link); return it and its token."""
    if tenant_id is not None:
        check_tenant(tenant_id)
    if not 0 < ttl <= MAX_LINK_TTL:
        raise InvalidEndpoint(f"a link's lifetime must be over 0s and at most {MAX_LINK_TTL:g}s")
    token = LINK_PREFIX + secrets.token_urlsafe(32)
    with wrapped_errors():
        conn.execute(queries.FORGET_PORTAL_LINKS, {"keep": KEEP_ENDED})
        row = conn.execute(
            queries.CREATE_PORTAL_LINK,
            {
                "tenant": tenant_id,
                "read_only": read_only,
                "secrets": reveal_secrets,
                "hash": hash_token(token),
                "ttl": ttl,
                "by": created_by[:200],
            },
        ).fetchone()
    assert row is not None
    return _link(row), token


def open_session(
    conn: psycopg.Connection[Any], link_token: str, *, ttl: float
) -> tuple[Session, str] | None:
    """Spend a link and open its session; return it and the session token.

    None when the link is unknown, malformed, already used, revoked or expired: whoever
    opens it second gets nothing, in one transaction with the session it opens.
    """
    if not isinstance(link_token, str) or not _TOKEN.fullmatch(link_token):
        return None
    if not link_token.startswith(LINK_PREFIX):
        return None
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    with wrapped_errors(), conn.transaction():
        link = conn.execute(queries.USE_PORTAL_LINK, {"hash": hash_token(link_token)}).fetchone()
        if link is None:
            return None
        row = conn.execute(
            queries.CREATE_PORTAL_SESSION,
            {
                "link": link["id"],
                "hash": hash_token(token),
                "tenant": link["tenant_id"],
                "admin": link["tenant_id"] is None,
                "read_only": link["read_only"],
                "secrets": link["secrets"],
                "ttl": ttl,
            },
        ).fetchone()
    assert row is not None
    return _session(row), token


def session(conn: psycopg.Connection[Any], token: str | None) -> Session | None:
    """Return the live session ``token`` opens, or None (unknown, revoked or expired)."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    if not token.startswith(SESSION_PREFIX):
        return None
    with wrapped_errors():
        row = conn.execute(queries.LIVE_PORTAL_SESSION, {"hash": hash_token(token)}).fetchone()
    return _session(row) if row is not None else None


def end_session(conn: psycopg.Connection[Any], token: str) -> None:
    """Sign a session out (its cookie opens nothing from now on)."""
    with wrapped_errors():
        conn.execute(queries.END_PORTAL_SESSION, {"hash": hash_token(token)})


def revoke_link(conn: psycopg.Connection[Any], link_id: int) -> tuple[Link, int]:
    """Revoke a link and the sessions it opened; return it and how many sessions ended."""
    with wrapped_errors():
        row = conn.execute(queries.REVOKE_PORTAL_LINK, {"id": link_id}).fetchone()
    if row is None:
        raise NotFound("portal link", link_id)
    return _link(row), int(row["sessions_revoked"])


def tenants(conn: psycopg.Connection[Any], limit: int = 500) -> list[str]:
    """Return the tenants an admin session may switch between (those with endpoints)."""
    with wrapped_errors():
        rows = conn.execute(queries.PORTAL_TENANTS, {"limit": limit}).fetchall()
    return [r["tenant_id"] for r in rows]


def event_types(
    conn: psycopg.Connection[Any], tenant_id: str, *, scan: int = 10000
) -> list[dict[str, Any]]:
    """Return the event types the tenant published lately, each with its latest payload.

    Only the newest ``scan`` events are read, so the answer stays fast at any history.
    """
    with wrapped_errors():
        rows: list[dict[str, Any]] = conn.execute(
            queries.EVENT_TYPES_PUBLISHED, {"tenant": tenant_id, "scan": scan}
        ).fetchall()
    return rows


def hourly(conn: psycopg.Connection[Any], tenant_id: str) -> list[dict[str, Any]]:
    """Return the tenant's attempts of the last 24 hours by hour: attempts and successes."""
    with wrapped_errors():
        rows: list[dict[str, Any]] = conn.execute(
            queries.DELIVERIES_BY_HOUR, {"tenant": tenant_id}
        ).fetchall()
    return rows


def endpoint_health(
    conn: psycopg.Connection[Any], endpoint_id: str, tenant_id: str
) -> dict[str, Any]:
    """Return an endpoint's last 24 hours: attempts, success rate, last success and failure,
    what is pending and dead-lettered now."""
    with wrapped_errors():
        row = conn.execute(
            queries.PORTAL_ENDPOINT_HEALTH, {"id": endpoint_id, "tenant": tenant_id}
        ).fetchone()
    out = dict(row or {})
    attempts = int(out.get("attempts_24h") or 0)
    out["success_rate_24h"] = round(int(out["ok_24h"]) / attempts, 4) if attempts else None
    return out


def _link(row: Any) -> Link:
    return Link(
        id=int(row["id"]),
        tenant_id=row["tenant_id"],
        read_only=row["read_only"],
        secrets=row["secrets"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        revoked_at=row["revoked_at"],
        created_by=row["created_by"],
    )


def _session(row: Any) -> Session:
    return Session(
        id=int(row["id"]),
        link_id=int(row["link_id"]),
        tenant_id=row["tenant_id"],
        admin=row["admin"],
        read_only=row["read_only"],
        secrets=row["secrets"],
        expires_at=row["expires_at"],
    )
