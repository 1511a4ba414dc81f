"""Summarise the pipeline's state for `webhooks status`, and check its invariants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from worker.queue import BrokerError, Queue, as_queue
from worker.store.db import wrapped_errors

# Every count is of one tenant when %(tenant)s is given (null: all tenants).
STATUS = """
select
    (select count(*) from webhooks.outbox where relayed_at is null and {t}) as outbox_backlog,
    (select extract(epoch from now() - min(created_at))
       from webhooks.outbox where relayed_at is null and {t}) as outbox_oldest_age_seconds,
    (select count(*) from webhooks.deliveries where status = 'pending' and {t}) as pending,
    (select count(*) from webhooks.deliveries
      where status = 'pending' and message_id is null and next_attempt_at <= now() and {t})
      as due,
    (select count(*) from webhooks.deliveries
      where status = 'pending' and message_id is not null and (locked_until is null
            or locked_until < now()) and {t}) as queued,
    (select count(*) from webhooks.deliveries
      where status = 'pending' and locked_until > now() and {t}) as in_flight,
    (select count(*) from webhooks.deliveries
      where status = 'pending' and message_id is null and next_attempt_at > now()
        and not circuit_wait and {t}) as waiting,
    (select count(*) from webhooks.deliveries
      where status = 'pending' and circuit_wait and {t}) as behind_open_circuits,
    (select count(*) from webhooks.dead_letters where replayed_at is null and {t})
      as dead_letters,
    (select count(*) from webhooks.endpoints where not enabled and {t}) as disabled_endpoints,
    (select count(*) from webhooks.endpoints
      where enabled and circuit_open_until is not null and {t}) as open_circuits,
    (select count(*) from webhooks.endpoints where {t}) as endpoints
""".replace("{t}", "(%(tenant)s::text is null or tenant_id = %(tenant)s::text)")


def status(
    conn: psycopg.Connection[Any],
    broker: Queue | Any | None,
    queue_name: str,
    *,
    tenant_id: str | None = None,
) -> dict[str, Any]:
    """Return backlog, lag, delivery states, dead letters, endpoints and queue depth.

    With ``tenant_id`` every count is that tenant's, except the queue depth: the queue is
    shared by every tenant.
    """
    with wrapped_errors():
        row = conn.execute(STATUS, {"tenant": tenant_id}).fetchone()
    out: dict[str, Any] = {"tenant": tenant_id, **(row or {})}
    age = out.get("outbox_oldest_age_seconds")
    out["outbox_oldest_age_seconds"] = float(age) if age is not None else None
    out["queue_depth"] = None
    if broker is not None:
        try:
            out["queue_depth"] = as_queue(broker, queue_name).depth()
        except BrokerError:
            out["queue_depth"] = None  # shown as unknown: the broker is down, Postgres is not
    return out


@dataclass(frozen=True)
class Invariant:
    """One property that must always hold, and the query listing what breaks it."""

    name: str
    description: str
    sql: str


INVARIANTS = (
    Invariant(
        "one_delivery_per_matching_endpoint",
        "a relayed event lacks a delivery to an endpoint that matched it when relayed",
        """
        select o.id::text as event_id, e.id::text as endpoint_id
        from webhooks.outbox o
        join webhooks.endpoints e
          on e.tenant_id = o.tenant_id
         and (e.event_types is null or o.event_type = any(e.event_types))
         and e.created_at < o.relayed_at
         and e.updated_at < o.relayed_at
         and e.enabled
         and (o.endpoint_id is null or o.endpoint_id = e.id)
        where o.relayed_at is not null
          and not exists (select 1 from webhooks.deliveries d
                          where d.event_id = o.id and d.endpoint_id = e.id)
        limit 100
        """,
    ),
    Invariant(
        "attempt_count_matches_rows",
        "a delivery's attempt count differs from its attempt rows",
        """
        select d.id as delivery_id, d.attempts, count(a.id) as rows
        from webhooks.deliveries d
        left join webhooks.attempts a on a.delivery_id = d.id
        group by d.id
        having d.attempts <> count(a.id)
        limit 100
        """,
    ),
    Invariant(
        "terminal_state_is_unique",
        "a delivery is succeeded with a current dead letter, or dead without one",
        """
        select d.id as delivery_id, d.status
        from webhooks.deliveries d
        left join webhooks.dead_letters dl on dl.delivery_id = d.id
        where (d.status = 'succeeded' and dl.delivery_id is not null
               and dl.replayed_at is null)
           or (d.status = 'dead' and (dl.delivery_id is null or dl.replayed_at is not null))
        limit 100
        """,
    ),
    Invariant(
        "nothing_overdue",
        "a pending delivery is overdue beyond its lease",
        """
        select d.id as delivery_id, d.next_attempt_at, d.locked_until
        from webhooks.deliveries d
        where d.status = 'pending'
          and d.next_attempt_at < now() - %(grace)s * interval '1 second'
        limit 100
        """,
    ),
    Invariant(
        "tenants_isolated",
        "a delivery joins an event and an endpoint of different tenants",
        """
        select d.id as delivery_id, d.tenant_id, o.tenant_id as event_tenant,
               e.tenant_id as endpoint_tenant
        from webhooks.deliveries d
        join webhooks.outbox o on o.id = d.event_id
        join webhooks.endpoints e on e.id = d.endpoint_id
        where d.tenant_id <> o.tenant_id or d.tenant_id <> e.tenant_id
        limit 100
        """,
    ),
)


def check(
    conn: psycopg.Connection[Any], *, grace: float = 120.0
) -> dict[str, list[dict[str, Any]]]:
    """Return, per invariant, the rows that break it (empty lists when all hold)."""
    found: dict[str, list[dict[str, Any]]] = {}
    with wrapped_errors():
        for inv in INVARIANTS:
            found[inv.name] = conn.execute(inv.sql, {"grace": grace}).fetchall()
    return found
