"""Make, list, check and revoke the HTTP API's keys: the Python API behind `webhooks api-key`.

A key is ``whk_`` followed by 32 random bytes (URL-safe base64), shown once when made; only
its SHA-256 is stored, so reading the table gives no usable key. A key names a tenant, or
none (an admin key, every tenant).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from worker.errors import InvalidEndpoint, NotFound
from worker.ops.validation import check_tenant
from worker.store import queries
from worker.store.db import wrapped_errors

PREFIX = "whk_"
MAX_NAME = 200
_KEY = re.compile(r"whk_[A-Za-z0-9_-]{20,100}")


@dataclass(frozen=True)
class ApiKey:
    """A key as operators see it (never the key itself)."""

    id: int
    name: str
    tenant_id: str | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def admin(self) -> bool:
        """Tell whether the key acts on every tenant."""
        return self.tenant_id is None


def hash_key(key: str) -> str:
    """Return the stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def create(
    conn: psycopg.Connection[Any], name: str, *, tenant_id: str | None
) -> tuple[ApiKey, str]:
    """Make a key for one tenant (or, with None, an admin key); return it and the key text."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise InvalidEndpoint(f"key name must be 1 to {MAX_NAME} characters")
    if tenant_id is not None:
        check_tenant(tenant_id)
    key = PREFIX + secrets.token_urlsafe(32)
    with wrapped_errors():
        row = conn.execute(
            queries.CREATE_API_KEY, {"name": name, "tenant": tenant_id, "hash": hash_key(key)}
        ).fetchone()
    assert row is not None
    return _key(row), key


def list_keys(conn: psycopg.Connection[Any]) -> list[ApiKey]:
    """Return every key, revoked ones included, oldest first."""
    with wrapped_errors():
        rows = conn.execute(queries.LIST_API_KEYS).fetchall()
    return [_key(r) for r in rows]


def revoke(conn: psycopg.Connection[Any], key_id: int) -> ApiKey:
    """Revoke a key at once (revoking it again keeps the first time); NotFound otherwise."""
    with wrapped_errors():
        row = conn.execute(queries.REVOKE_API_KEY, {"id": key_id}).fetchone()
    if row is None:
        raise NotFound("api key", key_id)
    return _key(row)


def authenticate(conn: psycopg.Connection[Any], key: str) -> ApiKey | None:
    """Return the live key ``key`` is, or None (unknown, malformed or revoked).

    ``last_used_at`` is written at most once a minute per key, so a busy client does not
    rewrite the row on every request.
    """
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        return None
    with wrapped_errors():
        row = conn.execute(queries.LIVE_API_KEY, {"hash": hash_key(key)}).fetchone()
        if row is not None and (
            row["last_used_at"] is None
            or datetime.now(UTC) - row["last_used_at"] > timedelta(minutes=1)
        ):
            conn.execute(queries.TOUCH_API_KEY, {"id": row["id"]})
    return _key(row) if row is not None else None


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=int(row["id"]),
        name=row["name"],
        tenant_id=row["tenant_id"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )
