-- One circuit per endpoint, shared by every worker process and host, and the bookkeeping of
-- operational events. Circuit state lives beside the endpoint it guards, so it survives
-- worker restarts and a flushed Redis.

alter table webhooks.endpoints
    -- failed attempts since the last success (throttles and 410 say nothing of health).
    add column consecutive_failures integer not null default 0,
    -- null while the circuit is closed; while open, when the next probe may go.
    add column circuit_open_until   timestamptz,
    -- seconds of the current open period: WEBHOOKS_CIRCUIT_COOLDOWN, doubled per failed
    -- probe up to WEBHOOKS_CIRCUIT_MAX_COOLDOWN.
    add column circuit_cooldown     double precision,
    -- the one delivery entitled to probe the open circuit, and until when it holds that
    -- right (a probe lost with its worker is replaced after this time).
    add column circuit_probe_id     bigint,
    add column circuit_probe_until  timestamptz;

-- The scheduler's probe pass reads only open circuits.
create index endpoints_circuit_open on webhooks.endpoints (circuit_open_until)
    where circuit_open_until is not null;

alter table webhooks.deliveries
    -- set while the delivery waits for its endpoint's circuit to close: it is parked at its
    -- expiry time (so the scheduler neither spins on it nor forgets the age limit) and made
    -- due again the moment the circuit closes.
    add column circuit_wait boolean not null default false;

create index deliveries_circuit_wait on webhooks.deliveries (endpoint_id)
    where circuit_wait and status = 'pending';

alter table webhooks.dead_letters
    -- null until the relay has counted the dead letter (webhooks_dead_letters_total) and
    -- announced it (webhooks.delivery.dead); set again to null when it dies again.
    add column announced_at timestamptz;

-- Dead letters filed before this migration were counted by the process that made them.
update webhooks.dead_letters set announced_at = now();

create index dead_letters_unannounced on webhooks.dead_letters (died_at)
    where announced_at is null;

create or replace function webhooks.dead_letter() returns trigger language plpgsql as $$
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
        died_at = now(), replayed_at = null, announced_at = null;
    return null;
end
$$;
