"""The HTTP API's keys (webhooks.api_keys): only their hashes are stored.

Rows are frozen dataclasses read through `worker.store.rows` (its docstring has the pattern).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from worker.store import queries
from worker.store.rows import many, one, run


@dataclass(frozen=True)
class ApiKey:
    """A key as operators see it (never the key itself, nor its hash)."""

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


def create(conn: psycopg.Connection[Any], name: str, tenant_id: str | None, hashed: str) -> ApiKey:
    """Store a key by its hash; return it."""
    params = {"name": name, "tenant": tenant_id, "hash": hashed}
    row = one(conn, ApiKey, queries.CREATE_API_KEY, params)
    assert row is not None
    return row


def list_all(conn: psycopg.Connection[Any]) -> list[ApiKey]:
    """Return every key, revoked ones included, oldest first."""
    return many(conn, ApiKey, queries.LIST_API_KEYS)


def revoke(conn: psycopg.Connection[Any], key_id: int) -> ApiKey | None:
    """Revoke a key (keeping the first revocation time); None when there is no such key."""
    return one(conn, ApiKey, queries.REVOKE_API_KEY, {"id": key_id})


def live(conn: psycopg.Connection[Any], hashed: str) -> ApiKey | None:
    """Return the unrevoked key with this hash, or None."""
    return one(conn, ApiKey, queries.LIVE_API_KEY, {"hash": hashed})


def touch(conn: psycopg.Connection[Any], key_id: int) -> None:
    """Record that a key was used now."""
    run(conn, queries.TOUCH_API_KEY, {"id": key_id})
