"""Endpoint health in the engine: fold a batch's outcomes into it, announce, disable.

The writer records a batch of attempts; the endpoints the batch touched are split here
(`split`): those that only succeeded and looked healthy get one cheap reset in the record
statement, the others are folded under their row locks, in the record's own transaction
(`fold`, deciding with `breaker.fold_health`), and what changed is logged and announced as
operational events. An endpoint a settlement says to disable is disabled by `disable`, its
pending deliveries dead-lettered, in a transaction of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from worker.delivery.attempt import Finished, iso
from worker.engine.database import Database
from worker.policy import breaker, operations
from worker.policy.outcome import Kind
from worker.store import engine as store
from worker.store.announce import announce_async

__all__ = ["Change", "disable", "fold", "split"]

log = logging.getLogger("webhooks.worker")

#: Each endpoint folded under its lock, with its (delivery id, outcome) pairs of the batch.
Folded = Mapping[str, list[tuple[int, Kind]]]


def split(batch: Sequence[Finished]) -> tuple[list[str], dict[str, list[tuple[int, Kind]]]]:
    """Return the endpoints whose failures a success resets, and those folded under lock.

    Endpoints that only succeeded and looked healthy: one cheap reset in RECORD. Any other:
    folded under the endpoint's row lock (`breaker.fold_health`).
    """
    by_endpoint: dict[str, list[Finished]] = {}
    for f in batch:
        by_endpoint.setdefault(f.job.endpoint_id, []).append(f)
    reset: list[str] = []
    folded: dict[str, list[tuple[int, Kind]]] = {}
    for endpoint_id, group in by_endpoint.items():
        if any(breaker.needs_health(f.job, [f.outcome.kind]) for f in group):
            folded[endpoint_id] = [(f.job.id, f.outcome.kind) for f in group]
        elif any(f.outcome.kind is Kind.SUCCEEDED for f in group):
            reset.append(endpoint_id)
    return reset, folded


async def fold(
    conn: AsyncConnection[Any],
    results: Folded,
    now: datetime,
    policy: breaker.CircuitPolicy,
    operations_tenant: str,
) -> list[Change]:
    """Fold the batch into each endpoint's stored health, in the caller's transaction.

    Writes the new health, makes the deliveries behind a circuit that closed due again, and
    announces the changes; returns them, for the caller to log once the transaction commits.
    """
    changes = []
    for row in await store.lock_health(conn, list(results)):
        endpoint = _Endpoint.from_row(row)
        change = breaker.fold_health(endpoint.health, results[endpoint.id], now, policy)
        if change.health != endpoint.health:
            changes.append(Change(endpoint, change))
    if not changes:
        return []
    await store.write_health(conn, [_health_row(c.endpoint.id, c.change.health) for c in changes])
    closed = [c.endpoint.id for c in changes if c.change.closed]
    if closed:
        await store.unpark(conn, closed)
    events = [
        event
        for c in changes
        if operations.concerns(c.endpoint.tenant_id, operations_tenant)
        for event in c.announcements()
    ]
    if events:
        await announce_async(conn, events, operations_tenant)
    return changes


async def disable(
    db: Database, endpoint_id: str, reason: str, operations_tenant: str, patience: float
) -> None:
    """Disable an endpoint; its pending deliveries become dead letters. Never raises."""

    async def disable(conn: AsyncConnection[Any]) -> store.Disabled | None:
        async with conn.transaction():
            row = await store.disable(conn, endpoint_id, reason)
            if row is not None and operations.concerns(row.tenant_id, operations_tenant):
                endpoint = operations.Disabled(
                    id=str(row.id),
                    tenant_id=row.tenant_id,
                    url=row.url,
                    disabled_at=row.disabled_at,
                )
                event = operations.endpoint_disabled(endpoint, reason, row.dead_lettered)
                await announce_async(conn, [event], operations_tenant)
        return row

    try:
        row = await db.run(disable, patience)
    except Exception:
        log.exception("could not disable endpoint %s", endpoint_id)
        return
    moved = row.dead_lettered if row else 0
    log.warning(
        "endpoint disabled",
        extra={"endpoint_id": endpoint_id, "reason": reason, "dead_lettered": moved},
    )


@dataclass(frozen=True)
class _Endpoint:
    """An endpoint's health, locked for a batch (a `worker.store.engine.HealthRow`)."""

    id: str
    tenant_id: str
    url: str
    health: breaker.Health

    @classmethod
    def from_row(cls, row: store.HealthRow) -> _Endpoint:
        health = breaker.Health(
            row.consecutive_failures,
            row.failing_since,
            row.circuit_open_until,
            row.circuit_cooldown,
            row.circuit_probe_id,
            row.circuit_probe_until,
        )
        return cls(row.id, row.tenant_id, row.url, health)

    def named(self) -> operations.Named:
        """Return what an operational event says of the endpoint (`operations`)."""
        return operations.Named(id=self.id, tenant_id=self.tenant_id, url=self.url)


@dataclass(frozen=True)
class Change:
    """An endpoint whose health a batch changed, for its log lines and events."""

    endpoint: _Endpoint
    change: breaker.HealthChange

    def announcements(self) -> list[operations.Announcement]:
        """Return the operational events the change makes (none, or some of two)."""
        out = []
        before, health = self.endpoint.health, self.change.health
        if self.change.opened:
            out.append(
                operations.circuit_opened(
                    self.endpoint.named(), health.consecutive_failures, health.circuit_open_until
                )
            )
        if self.change.recovered:
            out.append(
                operations.recovered(
                    self.endpoint.named(), before.consecutive_failures, before.is_open
                )
            )
        return out

    def log(self) -> None:
        """Log the change: a circuit opened, a probe failed, a circuit closed."""
        health = self.change.health
        extra = {
            "endpoint_id": self.endpoint.id,
            "consecutive_failures": health.consecutive_failures,
            "probe_at": iso(health.circuit_open_until),
        }
        if self.change.opened:
            log.warning("circuit opened", extra=extra)
        elif self.change.probe_failed:
            log.warning("circuit probe failed; circuit stays open", extra=extra)
        if self.change.closed:
            log.info(
                "circuit closed",
                extra={**extra, "failures_before": self.endpoint.health.consecutive_failures},
            )


def _health_row(endpoint_id: str, health: breaker.Health) -> dict[str, Any]:
    return {
        "id": endpoint_id,
        "consecutive_failures": health.consecutive_failures,
        "failing_since": iso(health.failing_since),
        "circuit_open_until": iso(health.circuit_open_until),
        "circuit_cooldown": health.circuit_cooldown,
        "circuit_probe_id": health.circuit_probe_id,
        "circuit_probe_until": iso(health.circuit_probe_until),
    }
