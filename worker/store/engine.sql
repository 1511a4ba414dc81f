-- name: claim
-- A worker claims the deliveries its messages name, a batch in one statement: only the
-- message a delivery expects (a stale or duplicate message finds nothing, guarantee 5), only
-- while pending, and only if no other worker holds it. Rows are locked in id order, so
-- concurrent claims never deadlock. The lock outlives one attempt; the scheduler leaves the
-- delivery alone until it expires (a worker killed mid-attempt is retried after that), and
-- no longer: the message is used, so a lease the scheduler extended for it (a long queue)
-- must not hold the delivery beyond the lock.
--
-- Rows are found by primary key whatever the statistics say. Message ids are random UUIDs,
-- so "id in the batch and message id in the batch" pairs each delivery with its own message.
-- "Not finished" is written so it cannot use the partial index deliveries_due: on a table
-- that grew since its last ANALYZE, the planner would read every pending row through it.
with wanted as (
    select d.id
    from webhooks.deliveries d
    where d.id = any(%(ids)s::bigint[])
      and d.message_id = any(%(message_ids)s::uuid[])
      and d.status not in ('succeeded', 'dead')
      and (d.locked_until is null or d.locked_until < now())
    order by d.id
    for update of d
)
update webhooks.deliveries d
set locked_until = now() + %(lock)s * interval '1 second',
    next_attempt_at = now() + %(lock)s * interval '1 second'
from wanted, webhooks.outbox o, webhooks.endpoints e
where d.id = wanted.id
  and o.id = d.event_id
  and e.id = d.endpoint_id
returning d.id, d.tenant_id, d.attempts, d.spent, d.budget_started_at, d.next_trigger,
          d.event_created_at, o.id::text as event_id, o.event_type, o.payload::text as payload,
          e.id::text as endpoint_id, e.tenant_id as endpoint_tenant, e.url, e.secrets,
          e.headers, e.rate_limit, e.enabled, e.failing_since, e.consecutive_failures,
          e.circuit_open_until, e.circuit_probe_id, e.circuit_probe_until, d.ordering_key,
          -- Ordered endpoints only (worker.policy.ordering.may_go decides): is an earlier
          -- delivery of the key pending, or an earlier event of the key not fanned out yet
          -- (a concurrent relay's batch, not committed)? Is an earlier one dead, neither
          -- replayed nor discarded?
          d.ordering_key is not null and (
              exists (select 1 from webhooks.deliveries p
                      where p.endpoint_id = d.endpoint_id and p.ordering_key = d.ordering_key
                        and p.status = 'pending' and p.event_id < d.event_id)
              or (d.ordering_key <> '' and exists (
                      select 1 from webhooks.outbox u
                      where u.relayed_at is null and u.tenant_id = d.tenant_id
                        and u.ordering_key = d.ordering_key and u.id < d.event_id))
              or (d.ordering_key = '' and exists (
                      select 1 from webhooks.outbox u
                      where u.relayed_at is null and u.tenant_id = d.tenant_id
                        and u.ordering_key is null and u.id < d.event_id))
          ) as ahead_pending,
          d.ordering_key is not null and exists (
              select 1 from webhooks.dead_letters l
              where l.endpoint_id = d.endpoint_id and l.ordering_key = d.ordering_key
                and l.event_id < d.event_id and l.replayed_at is null and l.discarded_at is null
          ) as ahead_dead;

-- name: record
-- Record a batch of HTTP attempts and their deliveries' new states in one statement: each
-- attempt row is written with its state change, never after it (guarantee 4), and never
-- edited. The counters move even if something else finished a delivery meanwhile; the
-- state only if pending. `reset` lists endpoints that only succeeded and looked healthy when
-- claimed: a failure counted meanwhile by another process is cleared (never a circuit: an
-- open one is closed under its row lock, `HEALTH_LOCK`).
-- `ids` repeats the rows' ids so the rows are found through the primary key whatever the
-- table's statistics say: joined to a function's output alone, a table that grew since its
-- last ANALYZE is read whole (a sequential scan per batch, measured at 10x the CPU).
-- `ordered` lists the batch's deliveries that have an ordering key: the next delivery of the
-- key of each one that finished is woken in the same statement (as `order_next` does) and
-- returned with `was` 'waiting' and its message id, so the engine takes it over with no
-- second round trip per hop of a key.
with r as (
    select * from jsonb_to_recordset(%(rows)s::jsonb) as r(
        id bigint, tenant text, spend int, status text, dead_reason text,
        next timestamptz, trigger text, started timestamptz, duration double precision,
        status_code int, body text, error_kind text, error text)
), prev as (
    select d.id, d.status
    from webhooks.deliveries d
    where d.id = any(%(ids)s::bigint[])
    order by d.id
    for update of d
), upd as (
    update webhooks.deliveries d
    set attempts = d.attempts + 1,
        spent = d.spent + r.spend,
        status = case when prev.status = 'pending' then r.status else d.status end,
        dead_reason = case when prev.status = 'pending' then r.dead_reason
                           else d.dead_reason end,
        next_attempt_at = case when prev.status = 'pending' and r.next is not null
                               then r.next else d.next_attempt_at end,
        finished_at = case when prev.status = 'pending' and r.status <> 'pending'
                           then now() else d.finished_at end,
        next_trigger = 'scheduled',
        message_id = null,
        locked_until = null,
        last_status_code = r.status_code,
        last_error = r.error,
        updated_at = now()
    from r, prev
    where d.id = any(%(ids)s::bigint[]) and d.id = r.id and prev.id = r.id
    returning d.id, d.attempts, d.status
), attempt as (
    insert into webhooks.attempts
        (delivery_id, tenant_id, number, trigger, started_at, duration_seconds, status_code,
         response_body, error_kind, error)
    select upd.id, r.tenant, upd.attempts, r.trigger, r.started, r.duration,
           r.status_code, r.body, r.error_kind, r.error
    from upd join r on r.id = upd.id
), reset as (
    update webhooks.endpoints e
    set consecutive_failures = 0, failing_since = null
    where e.id = any(%(reset)s::uuid[])
      and (e.consecutive_failures <> 0 or e.failing_since is not null)
      and e.circuit_open_until is null
), done as (
    select upd.id from upd
    where upd.id = any(%(ordered)s::bigint[]) and upd.status <> 'pending'
), woke as (
    update webhooks.deliveries d
    set order_wait = false, message_id = gen_random_uuid(),
        next_attempt_at = now() + %(lease)s * interval '1 second', updated_at = now()
    where d.id in (
        -- include: next_in_key
    ) and d.order_wait and d.status = 'pending'
    returning d.id, d.message_id::text as message_id
)
select upd.id, upd.status, prev.status as was, null as message_id
from upd join prev on prev.id = upd.id
union all
select woke.id, 'pending', 'waiting', woke.message_id from woke;

-- name: release
-- Put deliveries back without an attempt (throttle, open circuit, rate limit, busy endpoint),
-- or kill them without one (too old, endpoint disabled, tenant mismatch), a batch at once.
--
-- A delivery an open circuit holds back is parked (`wait`) only if the circuit is still open
-- now: one that closed since the claim makes it due at once instead. Open circuits are read
-- under a share lock of their endpoints' rows (in id order, as `health_lock` takes them): a
-- close under way (`health_lock` .. `unpark`, one transaction) is waited for and then seen,
-- and a close that comes later waits for this park and unparks it. Read without the lock, a
-- close committed meanwhile was missed and the delivery stayed parked behind a closed
-- circuit until the relay's sweep (`sweep_parked`, 30 s). One that waits for the delivery
-- before it in its ordering key is parked (`order_wait`) until that one wakes it
-- (`order_next`).
with held as (
    select e.id
    from webhooks.endpoints e
    where e.id in (select d.endpoint_id from webhooks.deliveries d
                   where d.id = any(%(ids)s::bigint[]))
      and e.circuit_open_until is not null
    order by e.id
    for share of e
), r as (
    select r.*, r.wait and d0.endpoint_id in (select id from held) as parked
    from jsonb_to_recordset(%(rows)s::jsonb) as r(id bigint, next timestamptz, status text,
                                                  dead_reason text, wait boolean,
                                                  order_wait boolean)
    join webhooks.deliveries d0 on d0.id = r.id and d0.id = any(%(ids)s::bigint[])
)
update webhooks.deliveries d
set next_attempt_at = case when r.wait and not r.parked then now()
                           else coalesce(r.next, d.next_attempt_at) end,
    circuit_wait = r.parked,
    order_wait = coalesce(r.order_wait, false),
    status = r.status,
    dead_reason = r.dead_reason,
    finished_at = case when r.status = 'dead' then now() else null end,
    message_id = null,
    locked_until = null,
    updated_at = now()
from r
where d.id = any(%(ids)s::bigint[]) and d.id = r.id and d.status = 'pending'
returning d.id;

-- name: health_lock
-- The health of the endpoints a batch failed (or that had failures or an open circuit when
-- claimed), locked in id order while the batch's outcomes are folded in (breaker.fold_health),
-- so concurrent processes count every failure once and agree on one circuit.
select id::text as id, tenant_id, url, consecutive_failures, failing_since,
       circuit_open_until, circuit_cooldown, circuit_probe_id, circuit_probe_until
from webhooks.endpoints
where id = any(%(ids)s::uuid[])
order by id
for update;

-- name: health_write
update webhooks.endpoints e
set consecutive_failures = h.consecutive_failures,
    failing_since = h.failing_since,
    circuit_open_until = h.circuit_open_until,
    circuit_cooldown = h.circuit_cooldown,
    circuit_probe_id = h.circuit_probe_id,
    circuit_probe_until = h.circuit_probe_until
from jsonb_to_recordset(%(rows)s::jsonb) as h(
    id uuid, consecutive_failures int, failing_since timestamptz,
    circuit_open_until timestamptz, circuit_cooldown double precision,
    circuit_probe_id bigint, circuit_probe_until timestamptz)
where e.id = h.id;

-- name: unpark
-- Deliveries parked behind circuits that just closed become due now; the scheduler's next
-- pass (within a second) enqueues them.
update webhooks.deliveries
set circuit_wait = false, next_attempt_at = now(), updated_at = now()
where endpoint_id = any(%(ids)s::uuid[]) and circuit_wait and status = 'pending';

-- name: rate_count
-- Count a batch of attempts against their endpoints' per-second limits (the RabbitMQ
-- deployments' rate limiter: no Redis there). One row per endpoint and second; returns each
-- endpoint's count after this batch, so the batch's own attempts are numbered
-- `count - added + 1 .. count`.
insert into webhooks.rate_counts as r (endpoint_id, second, count)
select e, %(second)s, n from unnest(%(endpoints)s::uuid[], %(added)s::int[]) as t(e, n)
on conflict (endpoint_id, second) do update set count = r.count + excluded.count
returning endpoint_id::text as endpoint_id, count;

-- name: rate_prune
-- Forget counts older than the window (run now and then by each worker process).
delete from webhooks.rate_counts where second < %(before)s;

-- name: order_next
-- Wake the next delivery of each ordering key whose delivery before it just finished
-- (succeeded, died, or was discarded): the earliest pending one of the key, if it is
-- waiting. It gets a message id and a lease, and is returned so the caller hands it over at
-- once (the engine to itself, an operator's command to the queue); if that is lost, the
-- scheduler enqueues it when the lease ends. Two wakers of one key: the second finds it no
-- longer waiting (the row is re-read under its lock) and leaves it.
with done as (
    select unnest(%(ids)s::bigint[]) as id
)
update webhooks.deliveries d
set order_wait = false, message_id = gen_random_uuid(),
    next_attempt_at = now() + %(lease)s * interval '1 second', updated_at = now()
where d.id in (
    -- include: next_in_key
) and d.order_wait and d.status = 'pending'
returning d.id, d.message_id::text as message_id;

-- name: next_in_key
-- The earliest pending delivery of the ordering key of each delivery in `done` (a relation
-- of ids the statement names), if it waits: the one to wake. The deliveries of `done` are
-- passed over, so a statement that finishes them can wake their successors in the same
-- snapshot, where they still read as pending.
select h.id
from (
    select distinct k.endpoint_id, k.ordering_key
    from webhooks.deliveries k
    where k.id in (select id from done) and k.ordering_key is not null
) keys
cross join lateral (
    select w.id, w.order_wait
    from webhooks.deliveries w
    where w.endpoint_id = keys.endpoint_id and w.ordering_key = keys.ordering_key
      and w.status = 'pending' and w.id not in (select id from done)
    order by w.event_id
    limit 1
) h
where h.order_wait
