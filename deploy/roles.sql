-- Least-privilege roles for the webhooks schema.
--
-- Run as the role that owns the schema (the one that runs `webhooks migrate`), after every
-- migration; the script is idempotent:
--
--   webhooks migrate                                   # as the owner
--   psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/roles.sql
--
-- It creates two NOLOGIN group roles. Grant them to the login roles you use:
--
--   grant webhooks_producer to app;            -- the domain services that call publish()
--   grant webhooks_service to webhooks_app;    -- webhooks relay, webhooks worker, the CLI
--
-- Neither role owns anything or may change the schema: only the owner runs migrations.

do $$
begin
    if not exists (select from pg_roles where rolname = 'webhooks_producer') then
        create role webhooks_producer nologin;
    end if;
    if not exists (select from pg_roles where rolname = 'webhooks_service') then
        create role webhooks_service nologin;
    end if;
end
$$;

-- Producer: publish events into the caller's transaction, and nothing else. publish() runs
--   insert into webhooks.outbox (id, tenant_id, event_type, payload, idempotency_key,
--                                ordering_key, trace_context) ...
--   on conflict (tenant_id, idempotency_key) where idempotency_key is not null
--   do update set idempotency_key = excluded.idempotency_key
--   returning id, tenant_id, idempotency_key
-- which needs INSERT on the inserted columns, SELECT on the conflict and returned columns
-- and UPDATE on the updated one. The producer cannot read payloads, nor see deliveries,
-- endpoints or secrets. (pg_notify, which wakes the relay, is open to every role.)
grant usage on schema webhooks to webhooks_producer;
grant insert (id, tenant_id, event_type, payload, idempotency_key, ordering_key,
              trace_context)
    on webhooks.outbox to webhooks_producer;
grant select (id, tenant_id, idempotency_key) on webhooks.outbox to webhooks_producer;
grant update (idempotency_key) on webhooks.outbox to webhooks_producer;

-- Service: the relay (claims outbox rows, creates deliveries), the workers (claim and record
-- attempts, disable endpoints, file dead letters through the trigger), the operator CLI
-- (endpoints, replay, prune, status) and the HTTP API (`webhooks api`, which also reads
-- webhooks.api_keys). Row data only, no DDL.
grant usage on schema webhooks to webhooks_service;
grant select, insert, update, delete on all tables in schema webhooks to webhooks_service;
grant usage, select on all sequences in schema webhooks to webhooks_service;
-- Tables and sequences later migrations create (when the same role runs them).
alter default privileges in schema webhooks
    grant select, insert, update, delete on tables to webhooks_service;
alter default privileges in schema webhooks
    grant usage, select on sequences to webhooks_service;
-- Attempts are append-only (guarantee 4): never edited, only pruned.
revoke update on webhooks.attempts from webhooks_service;
-- The readiness probe reads the schema version; only the owner records migrations.
revoke insert, update, delete on webhooks.schema_migrations from webhooks_service;
