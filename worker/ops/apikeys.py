"""Make, list, check and revoke the HTTP API's keys: the Python API behind `webhooks api-key`.

A key is ``whk_`` followed by 32 random bytes (URL-safe base64), shown once when made; only
its SHA-256 is stored, so reading the table gives no usable key. A key names a tenant, or
none (an admin key, every tenant).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from worker.errors import InvalidEndpoint, NotFound
from worker.ops.validation import check_tenant
from worker.store import apikeys as rows
from worker.store.apikeys import ApiKey as ApiKey
from worker.store.db import wrapped_errors

PREFIX = "whk_"
MAX_NAME = 200
_KEY = re.compile(r"whk_[A-Za-z0-9_-]{20,100}")


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
        made = rows.create(conn, name, tenant_id, hash_key(key))
    return made, key


def list_keys(conn: psycopg.Connection[Any]) -> list[ApiKey]:
    """Return every key, revoked ones included, oldest first."""
    with wrapped_errors():
        return rows.list_all(conn)


def revoke(conn: psycopg.Connection[Any], key_id: int) -> ApiKey:
    """Revoke a key at once (revoking it again keeps the first time); NotFound otherwise."""
    with wrapped_errors():
        row = rows.revoke(conn, key_id)
    if row is None:
        raise NotFound("api key", key_id)
    return row


def authenticate(conn: psycopg.Connection[Any], key: str) -> ApiKey | None:
    """Return the live key ``key`` is, or None (unknown, malformed or revoked).

    ``last_used_at`` is written at most once a minute per key, so a busy client does not
    rewrite the row on every request.
    """
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        return None
    with wrapped_errors():
        row = rows.live(conn, hash_key(key))
        if row is not None and (
            row.last_used_at is None or datetime.now(UTC) - row.last_used_at > timedelta(minutes=1)
        ):
            rows.touch(conn, row.id)
    return row
