-- name: pipeline_status
-- Every count of `webhooks status` in one round trip; each is of one tenant when %(tenant)s
-- is given (null: all tenants). The tenant test is written out in each part so that the
-- planner, which sees the parameter, drops it when it is null.
select
    (select count(*) from webhooks.outbox where relayed_at is null
       and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)) as outbox_backlog,
    (select extract(epoch from now() - min(created_at))
       from webhooks.outbox where relayed_at is null
        and (%(tenant)s::text is null or tenant_id = %(tenant)s::text))
      as outbox_oldest_age_seconds,
    (select count(*) from webhooks.deliveries where status = 'pending'
       and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)) as pending,
    (select count(*) from webhooks.deliveries
      where status = 'pending' and message_id is null and next_attempt_at <= now()
        and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)) as due,
    (select count(*) from webhooks.deliveries
      where status = 'pending' and message_id is not null and (locked_until is null
            or locked_until < now())
        and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)) as queued,
    (select count(*) from webhooks.deliveries
      where status = 'pending' and locked_until > now()
        and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)) as in_flight,
    (select count(*) from webhooks.deliveries
      where status = 'pending' and message_id is null and next_attempt_at > now()
        and not circuit_wait and not order_wait
        and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)) as waiting,
    (select count(*) from webhooks.deliveries
      where status = 'pending' and order_wait
        and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)) as behind_their_key,
    (select count(distinct (l.endpoint_id, l.ordering_key))
       from webhooks.dead_letters l
      where l.ordering_key is not null and l.replayed_at is null and l.discarded_at is null
        and (%(tenant)s::text is null or l.tenant_id = %(tenant)s::text)
        and exists (select 1 from webhooks.deliveries w
                     where w.endpoint_id = l.endpoint_id and w.ordering_key = l.ordering_key
                       and w.status = 'pending' and w.order_wait and w.event_id > l.event_id))
      as blocked_keys,
    (select count(*) from webhooks.deliveries
      where status = 'pending' and circuit_wait
        and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)) as behind_open_circuits,
    (select count(*) from webhooks.dead_letters where replayed_at is null and discarded_at is null
       and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)) as dead_letters,
    (select count(*) from webhooks.endpoints where not enabled
       and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)) as disabled_endpoints,
    (select count(*) from webhooks.endpoints
      where enabled and circuit_open_until is not null
        and (%(tenant)s::text is null or tenant_id = %(tenant)s::text)) as open_circuits,
    (select count(*) from webhooks.endpoints
      where (%(tenant)s::text is null or tenant_id = %(tenant)s::text)) as endpoints;

-- name: blocked_keys
-- Ordering keys held up by a dead delivery neither replayed nor discarded, with later ones
-- waiting behind it (WEBHOOKS_ORDERED_ON_DEATH=block): the first dead one of each, oldest
-- first.
select distinct on (l.endpoint_id, l.ordering_key)
       l.endpoint_id::text as endpoint_id, l.ordering_key, l.delivery_id, l.died_at,
       (select count(*) from webhooks.deliveries w
         where w.endpoint_id = l.endpoint_id and w.ordering_key = l.ordering_key
           and w.status = 'pending' and w.event_id > l.event_id) as waiting
from webhooks.dead_letters l
where l.ordering_key is not null and l.replayed_at is null and l.discarded_at is null
  and (%(tenant)s::text is null or l.tenant_id = %(tenant)s::text)
  and (%(endpoint)s::uuid is null or l.endpoint_id = %(endpoint)s::uuid)
  and exists (select 1 from webhooks.deliveries w
               where w.endpoint_id = l.endpoint_id and w.ordering_key = l.ordering_key
                 and w.status = 'pending' and w.order_wait and w.event_id > l.event_id)
order by l.endpoint_id, l.ordering_key, l.event_id
limit %(limit)s;

-- name: check_one_delivery_per_matching_endpoint
-- Invariant: a relayed event has a delivery to every endpoint that matched it when relayed
-- (an endpoint created or changed after the relay is not expected to have one).
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
limit 100;

-- name: check_attempt_count_matches_rows
-- Invariant: a delivery's attempt count equals its attempt rows.
select d.id as delivery_id, d.attempts, count(a.id) as rows
from webhooks.deliveries d
left join webhooks.attempts a on a.delivery_id = d.id
group by d.id
having d.attempts <> count(a.id)
limit 100;

-- name: check_terminal_state_is_unique
-- Invariant: a succeeded delivery has no current dead letter, and a dead one has one.
select d.id as delivery_id, d.status
from webhooks.deliveries d
left join webhooks.dead_letters dl on dl.delivery_id = d.id
where (d.status = 'succeeded' and dl.delivery_id is not null
       and dl.replayed_at is null and dl.discarded_at is null)
   or (d.status = 'dead' and (dl.delivery_id is null or dl.replayed_at is not null))
limit 100;

-- name: check_nothing_overdue
-- Invariant: no pending delivery is overdue by more than %(grace)s seconds.
select d.id as delivery_id, d.next_attempt_at, d.locked_until
from webhooks.deliveries d
where d.status = 'pending'
  and d.next_attempt_at < now() - %(grace)s * interval '1 second'
limit 100;

-- name: check_outbox_relayed
-- Invariant: no event waits unrelayed longer than %(grace)s seconds. One that does means no
-- relay is running (or it cannot reach Postgres or the broker): the pipeline is stalled.
-- The partial index outbox_unrelayed keeps this to the unrelayed rows.
select o.id::text as event_id, o.event_type, o.created_at
from webhooks.outbox o
where o.relayed_at is null
  and o.created_at < now() - %(grace)s * interval '1 second'
order by o.id
limit 100;

-- name: check_tenants_isolated
-- Invariant: a delivery, its event and its endpoint belong to one tenant.
select d.id as delivery_id, d.tenant_id, o.tenant_id as event_tenant,
       e.tenant_id as endpoint_tenant
from webhooks.deliveries d
join webhooks.outbox o on o.id = d.event_id
join webhooks.endpoints e on e.id = d.endpoint_id
where d.tenant_id <> o.tenant_id or d.tenant_id <> e.tenant_id
limit 100;
