-- name: fan_out
-- Fan out one batch of committed events: claim them (SKIP LOCKED, never "id > last seen",
-- which would skip rows whose transactions commit out of order), mark them relayed and create
-- one delivery per matching endpoint, all in one statement and one short transaction
-- (guarantee 2). Each delivery gets the id of the queue message the relay pushes after the
-- commit; until `lease` has passed the scheduler leaves it to that message. A delivery to an
-- endpoint whose circuit is open gets no message: it is parked (breaker.park) until the
-- circuit closes. Open circuits are read under a share lock (`held`, as the engine's
-- `release` does): a circuit closing now is seen closed, not parked behind after its unpark.
--
-- An endpoint matches an event of its tenant whose type it lists, or matches one of its
-- patterns (`event_type_regex`, producers.names.pattern_regex), and that passes its payload
-- filter: the filter's SQL/JSON path (worker.policy.jsonpath.compile_path) over the event as
-- {"type", "tenant", "data"}. A filtered-out pair creates no delivery; the last rows count
-- them by endpoint (`filtered_endpoint`, `filtered`) for webhooks_events_filtered_total.
-- jsonb_path_match runs silent: a path error (there should be none) filters the pair out
-- rather than failing the batch for ever.
--
-- A delivery to an ordered endpoint carries the event's ordering key ('' for none). Only the
-- first of its key gets a message: a later one in the batch, or one whose key already has an
-- earlier pending delivery (or one under way), is created waiting (`order_wait`, parked at
-- its expiry like a circuit's) until the one before it finishes (worker.policy.ordering).
with claimed as (
    select id, tenant_id, event_type, created_at, endpoint_id, payload, ordering_key
    from webhooks.outbox
    where relayed_at is null
    order by id
    limit %(batch)s
    for update skip locked
), marked as (
    update webhooks.outbox o set relayed_at = now()
    from claimed c where o.id = c.id
    returning o.id
), held as (
    select e.id, e.circuit_open_until
    from webhooks.endpoints e
    where e.circuit_open_until is not null
      and e.tenant_id in (select tenant_id from claimed)
    order by e.id
    for share of e
), matched as (
    select c.tenant_id, c.id as event_id, c.created_at, e.id as endpoint_id,
           (select h.circuit_open_until from held h where h.id = e.id) as circuit_open_until,
           case when e.ordered then coalesce(c.ordering_key, '') end as ordering_key,
           e.filter_path is null
           or coalesce(jsonb_path_match(
                  jsonb_build_object('type', c.event_type, 'tenant', c.tenant_id,
                                     'data', c.payload),
                  e.filter_path, e.filter_vars, true), false) as passes
    from claimed c
    join webhooks.endpoints e
      on e.tenant_id = c.tenant_id
     and e.enabled
     and (e.event_types is null or c.event_type = any(e.event_types)
          or c.event_type ~ e.event_type_regex)
     and (c.endpoint_id is null or e.id = c.endpoint_id)
), placed as (
    -- One pass over the batch (a window, not a join: the planner cannot size a CTE, and a
    -- join of it to itself ran as a nested loop, 15 times slower).
    select m.*,
           m.ordering_key is not null and (
               row_number() over (partition by m.endpoint_id, m.ordering_key
                                  order by m.event_id) > 1
               or exists (select 1 from webhooks.deliveries p
                          where p.endpoint_id = m.endpoint_id
                            and p.ordering_key = m.ordering_key and p.status = 'pending'
                            and (p.event_id < m.event_id or not p.order_wait))
           ) as order_wait
    from matched m
    where m.passes
), created as (
    insert into webhooks.deliveries
        (tenant_id, event_id, endpoint_id, event_created_at, message_id, next_attempt_at,
         circuit_wait, ordering_key, order_wait)
    select m.tenant_id, m.event_id, m.endpoint_id, m.created_at,
           case when m.circuit_open_until is null and not m.order_wait
                then gen_random_uuid() end,
           now() + case when m.circuit_open_until is null and not m.order_wait then %(lease)s
                        else %(max_age)s end * interval '1 second',
           m.circuit_open_until is not null and not m.order_wait,
           m.ordering_key, m.order_wait
    from placed m
    on conflict (event_id, endpoint_id) do nothing
    returning id, message_id
)
select (select count(*) from marked) as events, id, message_id::text as message_id,
       null::text as filtered_endpoint, null::bigint as filtered
from created
union all
select (select count(*) from marked), null, null, null, null
union all
select (select count(*) from marked), null, null, m.endpoint_id::text, count(*)
from matched m where not m.passes group by m.endpoint_id;

-- name: schedule
-- Take the deliveries the scheduler must look at: retries that are due, and queued ones whose
-- lease ran out (their message may be lost: relay crash, Redis flush). Each gets a message id
-- (a new one if it had none) and a fresh lease before the transaction commits, so a
-- concurrent relay skips it (guarantee 7).
with due as (
    select id, message_id
    from webhooks.deliveries
    where status = 'pending' and next_attempt_at <= now()
    order by next_attempt_at
    limit %(batch)s
    for update skip locked
)
update webhooks.deliveries d
set message_id = coalesce(d.message_id, gen_random_uuid()),
    next_attempt_at = now() + %(lease)s * interval '1 second'
from due
where d.id = due.id
returning d.id, d.message_id::text as message_id, due.message_id is not null as had_message;

-- name: recheck_queued
-- Redis lost its data (flushed, or restarted empty): every queued delivery's message may be
-- gone, so look at all of them now instead of when their leases end.
--
-- `lost` counts those queued before `before` (null: all): on a relay's first start the
-- deliveries it has just fanned out into an empty Redis are not lost.
with rechecked as (
    update webhooks.deliveries
    set next_attempt_at = now()
    where status = 'pending' and message_id is not null and next_attempt_at > now()
      and (locked_until is null or locked_until < now())
    returning created_at
)
select count(*) as rechecked,
       count(*) filter (where %(before)s::timestamptz is null or created_at < %(before)s)
           as lost
from rechecked;

-- name: extend_lease
-- Push back the check of deliveries whose message Redis still holds (a long queue).
update webhooks.deliveries
set next_attempt_at = now() + %(lease)s * interval '1 second'
where id = any(%(ids)s) and status = 'pending';

-- name: probe
-- The scheduler hands each open circuit whose cooldown is over its one probe: the endpoint's
-- most overdue pending delivery (the probe is its next attempt), given a message and the
-- probe's turn until `lease` has passed (a probe lost with its worker is replaced then).
-- Endpoints are taken SKIP LOCKED, so two relays never probe one endpoint twice (guarantee
-- 7, and one probe across all processes).
--
-- The probe's delivery is locked too, SKIP LOCKED: one a worker is claiming right now is
-- passed over. Taken anyway, it was claimed as an ordinary delivery, parked, and its probe
-- message found nothing: no probe for a whole lease. And a turn lasts while a worker holds
-- the probe (its claim's lock): a probe slower than the lease (a receiver that answers at
-- the request deadline, or never) is not joined by a second one, and its failure, still the
-- probe's, restarts and doubles the cooldown.
with due as (
    select e.id as endpoint_id, p.id
    from webhooks.endpoints e
    cross join lateral (
        select d.id
        from webhooks.deliveries d
        where d.endpoint_id = e.id and d.status = 'pending' and not d.order_wait
          and (d.locked_until is null or d.locked_until < now())
        order by d.next_attempt_at
        limit 1
        for update of d skip locked
    ) p
    where e.circuit_open_until is not null and e.circuit_open_until <= now()
      and (e.circuit_probe_until is null or e.circuit_probe_until < now())
      and not exists (select 1 from webhooks.deliveries h
                      where h.id = e.circuit_probe_id and h.locked_until > now())
      and e.enabled
    limit %(batch)s
    for update of e skip locked
), ep as (
    update webhooks.endpoints e
    set circuit_probe_id = due.id,
        circuit_probe_until = now() + %(lease)s * interval '1 second'
    from due
    where e.id = due.endpoint_id
), probe as (
    update webhooks.deliveries d
    set message_id = gen_random_uuid(), circuit_wait = false,
        next_attempt_at = now() + %(lease)s * interval '1 second', updated_at = now()
    from due
    where d.id = due.id and d.status = 'pending'
    returning d.id, d.message_id::text as message_id, d.endpoint_id::text as endpoint_id
)
select * from probe;

-- name: close_idle
-- An open circuit whose cooldown is over with nothing left to probe (every delivery behind it
-- expired or was killed) closes, so it is not reported open for ever. Its failure count
-- stays: the next failure opens it again at once.
update webhooks.endpoints e
set circuit_open_until = null, circuit_cooldown = null, circuit_probe_id = null,
    circuit_probe_until = null
where e.circuit_open_until is not null and e.circuit_open_until <= now()
  and (e.circuit_probe_until is null or e.circuit_probe_until < now())
  and not exists (select 1 from webhooks.deliveries d
                  where d.endpoint_id = e.id and d.status = 'pending')
returning e.id::text as endpoint_id;

-- name: sweep_parked
-- A safety net for a delivery parked while its circuit was closing (the park and the close
-- committed at once): due now if its endpoint's circuit is closed.
update webhooks.deliveries d
set circuit_wait = false, next_attempt_at = now(), updated_at = now()
from webhooks.endpoints e
where d.circuit_wait and d.status = 'pending' and e.id = d.endpoint_id
  and e.circuit_open_until is null;

-- name: sweep_ordered
-- A safety net for ordered delivery: the first pending delivery of an ordering key that
-- still waits, with nothing pending before it, is woken (the engine wakes the next one as
-- each finishes; a claim that saw its predecessor pending while that one finished leaves it
-- waiting). Under `block` (%(block)s) a key whose earlier delivery is dead, neither replayed
-- nor discarded, stays. SKIP LOCKED: concurrent relays share the work.
-- The heads are found by a loose index scan of `deliveries_ordering`, one probe per key
-- (the recursive part jumps to the next key), not by reading every pending delivery: with
-- 1,000,000 waiting behind 1,000 keys, 25 ms instead of 0.9 to 1.0 s (DISTINCT ON) every
-- sweep.
with recursive heads as (
    (select d.endpoint_id, d.ordering_key, d.id, d.order_wait, d.event_id
     from webhooks.deliveries d
     where d.ordering_key is not null and d.status = 'pending'
     order by d.endpoint_id, d.ordering_key, d.event_id
     limit 1)
    union all
    select n.endpoint_id, n.ordering_key, n.id, n.order_wait, n.event_id
    from heads h
    cross join lateral (
        select d.endpoint_id, d.ordering_key, d.id, d.order_wait, d.event_id
        from webhooks.deliveries d
        where d.ordering_key is not null and d.status = 'pending'
          and (d.endpoint_id, d.ordering_key) > (h.endpoint_id, h.ordering_key)
        order by d.endpoint_id, d.ordering_key, d.event_id
        limit 1
    ) n
), due as (
    select d.id
    from heads h join webhooks.deliveries d on d.id = h.id
    where h.order_wait
      and not (%(block)s and exists (
          select 1 from webhooks.dead_letters l
          where l.endpoint_id = h.endpoint_id and l.ordering_key = h.ordering_key
            and l.event_id < h.event_id and l.replayed_at is null and l.discarded_at is null))
    limit %(batch)s
    for update of d skip locked
)
update webhooks.deliveries d
set order_wait = false, message_id = gen_random_uuid(),
    next_attempt_at = now() + %(lease)s * interval '1 second', updated_at = now()
from due
where d.id = due.id and d.order_wait and d.status = 'pending'
returning d.id, d.message_id::text as message_id;

-- name: announce
-- The relay takes the dead letters nobody has counted yet (filed by a worker, the scheduler
-- or an operator), a batch at a time, SKIP LOCKED so relays share them, with what a
-- webhooks.delivery.dead event says of each.
with batch as (
    select delivery_id
    from webhooks.dead_letters
    where announced_at is null
    order by died_at
    limit %(batch)s
    for update skip locked
)
update webhooks.dead_letters dl
set announced_at = now()
from batch, webhooks.endpoints e
where dl.delivery_id = batch.delivery_id and e.id = dl.endpoint_id
returning dl.delivery_id, dl.tenant_id, dl.event_id, dl.endpoint_id, dl.event_type,
          dl.reason, dl.attempts, dl.died_at, e.url;

-- name: clock
-- Postgres's clock when a relay first connects: its first Redis check rechecks only the
-- deliveries fanned out since then, and does not report them lost (`Relay.check_redis`).
select now() as now;

-- name: listen
-- Wake the relay as soon as a publish commits (`producers.publish.CHANNEL`). LISTEN takes
-- no parameters, so the channel is written out here; a unit test keeps the two equal.
listen webhooks_outbox;
