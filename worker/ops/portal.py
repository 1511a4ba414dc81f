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
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import psycopg

from worker.errors import InvalidEndpoint, NotFound
from worker.ops.validation import check_tenant
from worker.store import portal as rows
from worker.store import status as status_rows
from worker.store.db import wrapped_errors
from worker.store.endpoints import Health
from worker.store.portal import Hour, PublishedType
from worker.store.portal import Link as Link
from worker.store.portal import Session as Session
from worker.store.status import BlockedKey

LINK_PREFIX = "whp_"
SESSION_PREFIX = "whs_"
#: The longest a link may wait to be opened: it travels in URLs, mail and chat.
MAX_LINK_TTL = 7 * 86400.0
#: How long ended links and sessions are kept (who made which link, for an audit).
KEEP_ENDED = 30 * 86400.0
_TOKEN = re.compile(r"wh[ps]_[A-Za-z0-9_-]{20,100}")


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
        rows.forget_links(conn, KEEP_ENDED)
        link = rows.create_link(
            conn,
            {
                "tenant": tenant_id,
                "read_only": read_only,
                "secrets": reveal_secrets,
                "hash": hash_token(token),
                "ttl": ttl,
                "by": created_by[:200],
            },
        )
    return link, token


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
        link = rows.use_link(conn, hash_token(link_token))
        if link is None:
            return None
        opened = rows.create_session(
            conn,
            {
                "link": link.id,
                "hash": hash_token(token),
                "tenant": link.tenant_id,
                "admin": link.tenant_id is None,
                "read_only": link.read_only,
                "secrets": link.secrets,
                "ttl": ttl,
            },
        )
    return opened, token


def session(conn: psycopg.Connection[Any], token: str | None) -> Session | None:
    """Return the live session ``token`` opens, or None (unknown, revoked or expired)."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    if not token.startswith(SESSION_PREFIX):
        return None
    with wrapped_errors():
        return rows.live_session(conn, hash_token(token))


def end_session(conn: psycopg.Connection[Any], token: str) -> None:
    """Sign a session out (its cookie opens nothing from now on)."""
    with wrapped_errors():
        rows.end_session(conn, hash_token(token))


def revoke_link(conn: psycopg.Connection[Any], link_id: int) -> tuple[Link, int]:
    """Revoke a link and the sessions it opened; return it and how many sessions ended."""
    with wrapped_errors():
        revoked = rows.revoke_link(conn, link_id)
    if revoked is None:
        raise NotFound("portal link", link_id)
    return revoked


def tenants(conn: psycopg.Connection[Any], limit: int = 500) -> list[str]:
    """Return the tenants an admin session may switch between (those with endpoints)."""
    with wrapped_errors():
        return rows.tenants(conn, limit)


def event_types(
    conn: psycopg.Connection[Any], tenant_id: str, *, scan: int = 10000
) -> list[PublishedType]:
    """Return the event types the tenant published lately, each with its latest payload.

    Only the newest ``scan`` events are read, so the answer stays fast at any history.
    """
    with wrapped_errors():
        return rows.event_types(conn, tenant_id, scan)


def hourly(conn: psycopg.Connection[Any], tenant_id: str) -> list[Hour]:
    """Return the tenant's attempts of the last 24 hours by hour: attempts and successes."""
    with wrapped_errors():
        return rows.hourly(conn, tenant_id)


def blocked_keys(
    conn: psycopg.Connection[Any], endpoint_id: str, tenant_id: str
) -> list[BlockedKey]:
    """Return the ordering keys of an endpoint that a dead delivery holds up."""
    with wrapped_errors():
        return status_rows.blocked_keys(conn, tenant_id, uuid.UUID(endpoint_id))


def endpoint_health(conn: psycopg.Connection[Any], endpoint_id: str, tenant_id: str) -> Health:
    """Return an endpoint's last 24 hours: attempts, success rate, last success and failure,
    what is pending and dead-lettered now."""
    with wrapped_errors():
        return rows.endpoint_health(conn, endpoint_id, tenant_id)
