"""Measure the portal's page latency at a million deliveries (the README's figures).

    python -m tests.portal.latency [--deliveries 1000000] [--requests 200]

Makes a database of its own on the local Postgres (dropped afterwards), fills it with two
tenants' history in SQL (one delivery per event, one attempt each, three for the 5% that
died; 30 days, the newest 24 hours as busy as the rest), serves the API with its portal
in this process and times each page, one request at a time, through a signed-in client.
Not a test: it asserts no time, it prints them.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import httpx
import psycopg

from tests.portal.server import portal_server
from worker.store import migrate

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ENDPOINTS = 20  # per tenant

SEED = """
insert into webhooks.endpoints (id, tenant_id, url, secrets)
select gen_random_uuid(), t, 'https://example.com/' || t || '/' || n,
       '[{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "expires_at": null}]'
from unnest(array['acme', 'globex']) t, generate_series(1, %(endpoints)s) n;

create temporary table ep as
select row_number() over (partition by tenant_id order by id) - 1 as n, tenant_id, id
from webhooks.endpoints;

insert into webhooks.outbox (id, tenant_id, event_type, payload, created_at, relayed_at)
select (lpad(to_hex((extract(epoch from ts) * 1000)::bigint), 12, '0') || '7'
        || substr(md5(g::text), 1, 3) || '8' || substr(md5(g::text), 4, 15))::uuid,
       case when g %% 2 = 0 then 'acme' else 'globex' end,
       (array['order.paid', 'order.refunded', 'invoice.sent', 'user.created'])[1 + g %% 4],
       jsonb_build_object('order', g, 'amount', g %% 1000, 'currency', 'EUR'),
       ts, ts
from generate_series(1, %(n)s) g,
     lateral (select now() - (interval '30 days') * (1 - g::float / %(n)s) as ts) t;

insert into webhooks.deliveries
    (tenant_id, event_id, endpoint_id, status, attempts, spent, last_status_code,
     event_created_at, created_at, updated_at, finished_at, dead_reason)
select o.tenant_id, o.id, ep.id,
       case when r < 0.05 then 'dead' when r < 0.10 then 'pending' else 'succeeded' end,
       case when r < 0.05 then 3 else 1 end, case when r < 0.05 then 3 else 1 end,
       case when r < 0.10 then 500 else 200 end,
       o.created_at, o.created_at, o.created_at,
       case when r >= 0.10 then o.created_at end,
       case when r < 0.05 then 'attempts_exhausted' end
from (select *, random() as r from webhooks.outbox) o
join ep on ep.tenant_id = o.tenant_id
       and ep.n = abs(hashtext(o.id::text)) %% %(endpoints)s
order by o.created_at;

insert into webhooks.attempts
    (delivery_id, tenant_id, number, trigger, started_at, duration_seconds, status_code,
     response_body)
select d.id, d.tenant_id, k, 'scheduled', d.created_at + (k - 1) * interval '5 s', 0.05,
       d.last_status_code, 'ok'
from webhooks.deliveries d, generate_series(1, d.attempts) k
order by 5;  -- appended in time order, as the workers append them

insert into webhooks.dead_letters
    (delivery_id, tenant_id, event_id, endpoint_id, event_type, reason, attempts,
     last_status_code, died_at)
select d.id, d.tenant_id, d.event_id, d.endpoint_id, o.event_type, 'attempts_exhausted',
       3, 500, d.created_at + interval '10 s'
from webhooks.deliveries d join webhooks.outbox o on o.id = d.event_id
where d.status = 'dead';
"""


def seed(url: str, deliveries: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        migrate.migrate(conn)  # type: ignore[arg-type]
        with conn.transaction():
            for statement in SEED.split(";\n"):
                if statement.strip():
                    conn.execute(statement, {"n": deliveries, "endpoints": ENDPOINTS})
        conn.execute("vacuum analyze")


def timed(client: httpx.Client, url: str, requests: int) -> tuple[float, float, float]:
    for _ in range(3):  # warm the pool and the caches
        assert client.get(url).status_code == 200, url
    spent = []
    for _ in range(requests):
        start = time.perf_counter()
        answer = client.get(url)
        spent.append(time.perf_counter() - start)
        assert answer.status_code == 200, url
    spent.sort()
    p99 = spent[min(len(spent) - 1, int(len(spent) * 0.99))]
    return statistics.median(spent) * 1000, p99 * 1000, spent[-1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    parser.add_argument("--database", help="Measure this database, seeded by an earlier --keep.")
    args = parser.parse_args()
    name = f"webhooks_portal_latency_{uuid.uuid4().hex[:8]}"
    url = args.database or ADMIN.rsplit("/", 1)[0] + "/" + name
    if args.database is None:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
    try:
        if args.database is None:
            started = time.monotonic()
            seed(url, args.deliveries)
            print(f"seeded {args.deliveries:,} deliveries in {time.monotonic() - started:.0f}s")
        else:
            with psycopg.connect(url, autocommit=True) as conn:
                migrate.migrate(conn)  # type: ignore[arg-type]
        with portal_server(url, args.redis) as server:
            client = server.session("acme")
            with psycopg.connect(url) as conn:
                event = conn.execute(
                    "select id from webhooks.outbox where tenant_id = 'acme'"
                    " order by id desc limit 1 offset 100"
                ).fetchone()
                delivery = conn.execute(
                    "select id from webhooks.deliveries where tenant_id = 'acme'"
                    " and status = 'dead' order by id limit 1 offset 10"
                ).fetchone()
                endpoint = conn.execute(
                    "select id from webhooks.endpoints where tenant_id = 'acme' limit 1"
                ).fetchone()
            assert event and delivery and endpoint
            pages = {
                "overview": "/",
                "event log": "/events",
                "event log, one type": "/events?type=order.paid",
                "event": f"/events/{event[0]}",
                "deliveries, dead": "/deliveries?status=dead",
                "delivery": f"/deliveries/{delivery[0]}",
                "dead letters": "/dead-letters",
                "endpoints": "/endpoints",
                "endpoint": f"/endpoints/{endpoint[0]}",
                "event types": "/event-types",
            }
            print(f"| page | p50 | p99 | max |  ({args.requests} requests each)")
            print("|---|---|---|---|")
            for label, path in pages.items():
                p50, p99, most = timed(client, server.portal + path, args.requests)
                print(f"| {label} | {p50:.1f} ms | {p99:.1f} ms | {most:.1f} ms |")
    finally:
        if args.keep or args.database:
            print(f"kept {url}")
        else:
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(f'drop database if exists "{name}" with (force)')


if __name__ == "__main__":
    main()
