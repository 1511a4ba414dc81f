-- Ordered delivery per key (README, "Ordered delivery").
--
-- An event may carry an `ordering_key`. An endpoint marked `ordered` receives the events of one
-- key one after another in publish (outbox id) order: the next is not sent until the one
-- before it has succeeded or is dead. Its deliveries carry the key (`''` for events without
-- one: those are ordered per endpoint as a whole); every other delivery has null there and
-- is untouched by what follows.
--
-- A delivery that must wait for the one before it is `order_wait`: it has no queue message,
-- and is parked at its expiry time so the scheduler neither spins on it nor forgets the age
-- limit. When the one before it finishes, the engine (or `dlq discard`) wakes it; a relay
-- sweep wakes any a race left behind.

alter table webhooks.outbox add column ordering_key text;

-- Whether an earlier event of a key is still waiting for the relay (a claim must not pass
-- it): only the unrelayed rows that carry a key.
create index outbox_unrelayed_ordering on webhooks.outbox (tenant_id, ordering_key, id)
    where relayed_at is null and ordering_key is not null;

alter table webhooks.endpoints add column ordered boolean not null default false;

alter table webhooks.deliveries
    add column ordering_key text,
    add column order_wait boolean not null default false;

-- "Is an earlier delivery of this key still pending?": the claim's check and the wake-ups.
create index deliveries_ordering on webhooks.deliveries (endpoint_id, ordering_key, event_id)
    where ordering_key is not null and status = 'pending';

alter table webhooks.dead_letters
    add column ordering_key text,
    -- set by `webhooks dlq discard`: the operator gave the delivery up; under
    -- WEBHOOKS_ORDERED_ON_DEATH=block its key goes on. Cleared by a replay.
    add column discarded_at timestamptz,
    add column discarded_by text;

-- "Is an earlier delivery of this key dead, and neither replayed nor discarded?" (block).
create index dead_letters_ordering on webhooks.dead_letters (endpoint_id, ordering_key, event_id)
    where ordering_key is not null and replayed_at is null and discarded_at is null;

create or replace function webhooks.dead_letter() returns trigger language plpgsql as $$
begin
    insert into webhooks.dead_letters as dl
        (delivery_id, tenant_id, event_id, endpoint_id, event_type, reason, attempts,
         last_status_code, last_error, ordering_key)
    select new.id, new.tenant_id, new.event_id, new.endpoint_id, o.event_type,
           coalesce(new.dead_reason, 'unknown'), new.attempts, new.last_status_code,
           new.last_error, new.ordering_key
    from webhooks.outbox o
    where o.id = new.event_id
    on conflict (delivery_id) do update
    set reason = excluded.reason, attempts = excluded.attempts,
        last_status_code = excluded.last_status_code, last_error = excluded.last_error,
        died_at = now(), replayed_at = null, announced_at = null, discarded_at = null;
    return null;
end
$$;
