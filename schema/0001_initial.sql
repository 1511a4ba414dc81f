-- The tables of the webhooks schema. Applied by `webhooks migrate`, which creates the schema
-- and webhooks.schema_migrations itself before running this file.

-- Endpoints: where a tenant's events are delivered.
create table webhooks.endpoints (
    id              uuid primary key,
    tenant_id       text not null default 'default',
    url             text not null,
    description     text not null default '',
    -- null delivers every event type; otherwise the exact types listed.
    event_types     text[],
    -- [{"secret": "whsec_..." | "enc:v1:...", "expires_at": null | iso8601}], current first.
    secrets         jsonb not null default '[]',
    headers         jsonb not null default '{}',
    -- requests per second across all workers; null is unlimited.
    rate_limit      integer check (rate_limit > 0),
    enabled         boolean not null default true,
    disabled_reason text,
    disabled_at     timestamptz,
    -- first failure since the last success; written only when it changes, so a busy
    -- endpoint's row is not rewritten on every delivery.
    failing_since   timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create index endpoints_tenant on webhooks.endpoints (tenant_id);

-- Outbox: one row per published event. Ids are UUIDv7, so id order is creation order and
-- retention can prune by id range without an index of its own.
create table webhooks.outbox (
    id              uuid primary key,
    tenant_id       text not null default 'default',
    event_type      text not null,
    payload         jsonb not null,
    idempotency_key text,
    created_at      timestamptz not null default now(),
    -- set by the relay when it fans the event out; the payload stays for replay.
    relayed_at      timestamptz
);
create unique index outbox_idempotency on webhooks.outbox (tenant_id, idempotency_key)
    where idempotency_key is not null;
-- The relay's work queue: only unrelayed rows, so it stays small however large the table is.
create index outbox_unrelayed on webhooks.outbox (id) where relayed_at is null;

-- Deliveries: one per (event, endpoint), created by the relay.
create table webhooks.deliveries (
    id                bigint generated always as identity primary key,
    tenant_id         text not null,
    event_id          uuid not null references webhooks.outbox (id) on delete cascade,
    endpoint_id       uuid not null references webhooks.endpoints (id) on delete cascade,
    status            text not null default 'pending'
                      check (status in ('pending', 'succeeded', 'dead')),
    -- every HTTP attempt ever made (equals the delivery's rows in webhooks.attempts).
    attempts          integer not null default 0,
    -- attempts that count against the retry schedule since creation or the last replay
    -- (throttled attempts do not).
    spent             integer not null default 0,
    -- start of the current budget: creation, or the last replay (for max age).
    budget_started_at timestamptz not null default now(),
    -- when the scheduler next looks at the delivery: the next attempt's time while it waits
    -- for a retry, the end of the queue lease while a message for it is queued.
    next_attempt_at   timestamptz not null default now(),
    -- the one queue message entitled to make the next attempt; cleared when it is used.
    message_id        uuid,
    -- a worker is attempting the delivery until then.
    locked_until      timestamptz,
    -- what the next attempt is: 'replay' right after a replay, else 'scheduled'.
    next_trigger      text not null default 'scheduled',
    last_status_code  integer,
    last_error        text,
    -- why the delivery is dead (copied into dead_letters by the trigger below).
    dead_reason       text,
    event_created_at  timestamptz not null,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    finished_at       timestamptz,
    unique (event_id, endpoint_id)
);
create index deliveries_due on webhooks.deliveries (next_attempt_at) where status = 'pending';
create index deliveries_endpoint on webhooks.deliveries (endpoint_id, status);

-- Attempts: append-only, one row per HTTP attempt.
create table webhooks.attempts (
    id               bigint generated always as identity primary key,
    delivery_id      bigint not null references webhooks.deliveries (id) on delete cascade,
    tenant_id        text not null,
    number           integer not null,
    trigger          text not null check (trigger in ('scheduled', 'replay')),
    started_at       timestamptz not null,
    duration_seconds double precision not null,
    status_code      integer,
    response_body    text,
    error_kind       text,
    error            text
);
create index attempts_delivery on webhooks.attempts (delivery_id, number);

-- Dead letters: one row per delivery that gave up, with its replay history.
create table webhooks.dead_letters (
    delivery_id      bigint primary key references webhooks.deliveries (id) on delete cascade,
    tenant_id        text not null,
    event_id         uuid not null,
    endpoint_id      uuid not null,
    event_type       text not null,
    reason           text not null,
    attempts         integer not null,
    last_status_code integer,
    last_error       text,
    died_at          timestamptz not null default now(),
    -- null while the delivery is dead; set when a replay brings it back.
    replayed_at      timestamptz,
    replay_count     integer not null default 0,
    -- [{"at": iso8601, "by": "user@host", "attempts_before": n}]
    replays          jsonb not null default '[]'
);
create index dead_letters_died on webhooks.dead_letters (died_at);
create index dead_letters_event_type on webhooks.dead_letters (event_type, died_at);
create index dead_letters_current on webhooks.dead_letters (endpoint_id, died_at)
    where replayed_at is null;

-- Every delivery that becomes dead gets its dead letter, whichever path killed it (schedule
-- exhausted, too old, endpoint disabled), so no code path can forget one. A delivery that
-- dies again after a replay updates its row and keeps the replay history.
create function webhooks.dead_letter() returns trigger language plpgsql as $$
begin
    insert into webhooks.dead_letters as dl
        (delivery_id, tenant_id, event_id, endpoint_id, event_type, reason, attempts,
         last_status_code, last_error)
    select new.id, new.tenant_id, new.event_id, new.endpoint_id, o.event_type,
           coalesce(new.dead_reason, 'unknown'), new.attempts, new.last_status_code,
           new.last_error
    from webhooks.outbox o
    where o.id = new.event_id
    on conflict (delivery_id) do update
    set reason = excluded.reason, attempts = excluded.attempts,
        last_status_code = excluded.last_status_code, last_error = excluded.last_error,
        died_at = now(), replayed_at = null;
    return null;
end
$$;

create trigger deliveries_dead_letter
    after update of status on webhooks.deliveries
    for each row
    when (new.status = 'dead' and old.status is distinct from 'dead')
    execute function webhooks.dead_letter();
