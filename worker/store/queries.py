"""SQL shared by the registry, the relay, the workers and the CLI, kept in one place."""

# Disable an endpoint and kill its pending deliveries in one statement (the trigger files
# their dead letters, reason endpoint_disabled), so none stays pending for ever (guarantee 3)
# and a replay can bring them back once the endpoint is fixed.
DISABLE_ENDPOINT = """
with ep as (
    update webhooks.endpoints
    set enabled = false, disabled_reason = %(reason)s, disabled_at = now(), updated_at = now()
    where id = %(id)s and (%(tenant)s::text is null or tenant_id = %(tenant)s)
    returning *
), dead as (
    update webhooks.deliveries d
    set status = 'dead', dead_reason = 'endpoint_disabled', finished_at = now(),
        updated_at = now(), message_id = null, circuit_wait = false
    from ep
    where d.endpoint_id = ep.id and d.status = 'pending'
    returning d.id
)
select ep.*, (select count(*) from dead) as dead_lettered from ep
"""

# Fan out one batch of committed events: claim them (SKIP LOCKED, never "id > last seen",
# which would skip rows whose transactions commit out of order), mark them relayed and create
# one delivery per matching endpoint, all in one statement and one short transaction
# (guarantee 2). Each delivery gets the id of the queue message the relay pushes after the
# commit; until `lease` has passed the scheduler leaves it to that message. A delivery to an
# endpoint whose circuit is open gets no message: it is parked (plan.park) until the
# circuit closes.
FAN_OUT = """
with claimed as (
    select id, tenant_id, event_type, created_at, endpoint_id
    from webhooks.outbox
    where relayed_at is null
    order by id
    limit %(batch)s
    for update skip locked
), marked as (
    update webhooks.outbox o set relayed_at = now()
    from claimed c where o.id = c.id
    returning o.id
), created as (
    insert into webhooks.deliveries
        (tenant_id, event_id, endpoint_id, event_created_at, message_id, next_attempt_at,
         circuit_wait)
    select c.tenant_id, c.id, e.id, c.created_at,
           case when e.circuit_open_until is null then gen_random_uuid() end,
           now() + case when e.circuit_open_until is null then %(lease)s
                        else %(max_age)s end * interval '1 second',
           e.circuit_open_until is not null
    from claimed c
    join webhooks.endpoints e
      on e.tenant_id = c.tenant_id
     and e.enabled
     and (e.event_types is null or c.event_type = any(e.event_types))
     and (c.endpoint_id is null or e.id = c.endpoint_id)
    on conflict (event_id, endpoint_id) do nothing
    returning id, message_id
)
select (select count(*) from marked) as events, id, message_id::text as message_id
from created
union all
select (select count(*) from marked), null, null
"""

# Take the deliveries the scheduler must look at: retries that are due, and queued ones whose
# lease ran out (their message may be lost: relay crash, Redis flush). Each gets a message id
# (a new one if it had none) and a fresh lease before the transaction commits, so a
# concurrent relay skips it (guarantee 7).
SCHEDULE = """
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
returning d.id, d.message_id::text as message_id, due.message_id is not null as had_message
"""

# Redis lost its data (flushed, or restarted empty): every queued delivery's message may be
# gone, so look at all of them now instead of when their leases end.
#
# `lost` counts those queued before `before` (null: all): on a relay's first start the
# deliveries it has just fanned out into an empty Redis are not lost.
RECHECK_QUEUED = """
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
from rechecked
"""

# Push back the check of deliveries whose message Redis still holds (a long queue).
EXTEND_LEASE = """
update webhooks.deliveries
set next_attempt_at = now() + %(lease)s * interval '1 second'
where id = any(%(ids)s) and status = 'pending'
"""

# A worker claims the deliveries its messages name, a batch in one statement: only the
# message a delivery expects (a stale or duplicate message finds nothing, guarantee 5), only
# while pending, and only if no other worker holds it. Rows are locked in id order, so
# concurrent claims never deadlock. The lock outlives one attempt; the scheduler leaves the
# delivery alone until it expires (a worker killed mid-attempt is retried after that).
#
# Rows are found by primary key whatever the statistics say. Message ids are random UUIDs,
# so "id in the batch and message id in the batch" pairs each delivery with its own message.
# "Not finished" is written so it cannot use the partial index deliveries_due: on a table
# that grew since its last ANALYZE, the planner would read every pending row through it.
CLAIM = """
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
    next_attempt_at = greatest(d.next_attempt_at, now() + %(lock)s * interval '1 second')
from wanted, webhooks.outbox o, webhooks.endpoints e
where d.id = wanted.id
  and o.id = d.event_id
  and e.id = d.endpoint_id
returning d.id, d.tenant_id, d.attempts, d.spent, d.budget_started_at, d.next_trigger,
          d.event_created_at, o.id::text as event_id, o.event_type, o.payload::text as payload,
          e.id::text as endpoint_id, e.tenant_id as endpoint_tenant, e.url, e.secrets,
          e.headers, e.rate_limit, e.enabled, e.failing_since, e.consecutive_failures,
          e.circuit_open_until, e.circuit_probe_id, e.circuit_probe_until
"""

# Record a batch of HTTP attempts and their deliveries' new states in one statement: each
# attempt row is written with its state change, never after it (guarantee 4), and never
# edited. The counters move even if something else finished a delivery meanwhile; the
# state only if pending. `reset` lists endpoints that only succeeded and looked healthy when
# claimed: a failure counted meanwhile by another process is cleared (never a circuit: an
# open one is closed under its row lock, `HEALTH_LOCK`).
# `ids` repeats the rows' ids so the rows are found through the primary key whatever the
# table's statistics say: joined to a function's output alone, a table that grew since its
# last ANALYZE is read whole (a sequential scan per batch, measured at 10x the CPU).
RECORD = """
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
)
select upd.id, upd.status, prev.status as was from upd join prev on prev.id = upd.id
"""

# Put deliveries back without an attempt (throttle, open circuit, rate limit, busy endpoint),
# or kill them without one (too old, endpoint disabled, tenant mismatch), a batch at once.
#
# A delivery an open circuit holds back is parked (`wait`) only if the circuit is still open
# now: one that closed since the claim makes it due at once instead.
RELEASE = """
with r as (
    select r.*, r.wait and e.circuit_open_until is not null as parked
    from jsonb_to_recordset(%(rows)s::jsonb) as r(id bigint, next timestamptz, status text,
                                                  dead_reason text, wait boolean)
    join webhooks.deliveries d0 on d0.id = r.id and d0.id = any(%(ids)s::bigint[])
    join webhooks.endpoints e on e.id = d0.endpoint_id
)
update webhooks.deliveries d
set next_attempt_at = case when r.wait and not r.parked then now()
                           else coalesce(r.next, d.next_attempt_at) end,
    circuit_wait = r.parked,
    status = r.status,
    dead_reason = r.dead_reason,
    finished_at = case when r.status = 'dead' then now() else null end,
    message_id = null,
    locked_until = null,
    updated_at = now()
from r
where d.id = any(%(ids)s::bigint[]) and d.id = r.id and d.status = 'pending'
returning d.id
"""

# The health of the endpoints a batch failed (or that had failures or an open circuit when
# claimed), locked in id order while the batch's outcomes are folded in (plan.fold_health),
# so concurrent processes count every failure once and agree on one circuit.
HEALTH_LOCK = """
select id::text as id, tenant_id, url, consecutive_failures, failing_since,
       circuit_open_until, circuit_cooldown, circuit_probe_id, circuit_probe_until
from webhooks.endpoints
where id = any(%(ids)s::uuid[])
order by id
for update
"""

HEALTH_WRITE = """
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
where e.id = h.id
"""

# Deliveries parked behind circuits that just closed become due now; the scheduler's next
# pass (within a second) enqueues them.
UNPARK = """
update webhooks.deliveries
set circuit_wait = false, next_attempt_at = now(), updated_at = now()
where endpoint_id = any(%(ids)s::uuid[]) and circuit_wait and status = 'pending'
"""

# An operator closes a circuit (endpoint reset or enable, dlq replay --endpoint): the
# endpoint starts afresh (its failure streak forgotten, so one failure cannot disable it at
# once) and its parked deliveries are due now.
CLOSE_CIRCUIT = """
with ep as (
    update webhooks.endpoints
    set consecutive_failures = 0, failing_since = null, circuit_open_until = null,
        circuit_cooldown = null, circuit_probe_id = null, circuit_probe_until = null
    where id = %(id)s and (%(tenant)s::text is null or tenant_id = %(tenant)s)
    returning id, circuit_open_until
), unparked as (
    update webhooks.deliveries d
    set circuit_wait = false, next_attempt_at = now(), updated_at = now()
    from ep
    where d.endpoint_id = ep.id and d.circuit_wait and d.status = 'pending'
    returning d.id
)
select (select count(*) from ep) as endpoints, (select count(*) from unparked) as unparked
"""

# The scheduler hands each open circuit whose cooldown is over its one probe: the endpoint's
# most overdue pending delivery (the probe is its next attempt), given a message and the
# probe's turn until `lease` has passed (a probe lost with its worker is replaced then).
# Endpoints are taken SKIP LOCKED, so two relays never probe one endpoint twice (guarantee
# 7, and one probe across all processes).
PROBE = """
with due as (
    select e.id as endpoint_id, p.id
    from webhooks.endpoints e
    cross join lateral (
        select d.id
        from webhooks.deliveries d
        where d.endpoint_id = e.id and d.status = 'pending'
          and (d.locked_until is null or d.locked_until < now())
        order by d.next_attempt_at
        limit 1
    ) p
    where e.circuit_open_until is not null and e.circuit_open_until <= now()
      and (e.circuit_probe_until is null or e.circuit_probe_until < now())
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
select * from probe
"""

# An open circuit whose cooldown is over with nothing left to probe (every delivery behind it
# expired or was killed) closes, so it is not reported open for ever. Its failure count
# stays: the next failure opens it again at once.
CLOSE_IDLE = """
update webhooks.endpoints e
set circuit_open_until = null, circuit_cooldown = null, circuit_probe_id = null,
    circuit_probe_until = null
where e.circuit_open_until is not null and e.circuit_open_until <= now()
  and (e.circuit_probe_until is null or e.circuit_probe_until < now())
  and not exists (select 1 from webhooks.deliveries d
                  where d.endpoint_id = e.id and d.status = 'pending')
returning e.id::text as endpoint_id
"""

# A safety net for a delivery parked while its circuit was closing (the park and the close
# committed at once): due now if its endpoint's circuit is closed.
SWEEP_PARKED = """
update webhooks.deliveries d
set circuit_wait = false, next_attempt_at = now(), updated_at = now()
from webhooks.endpoints e
where d.circuit_wait and d.status = 'pending' and e.id = d.endpoint_id
  and e.circuit_open_until is null
"""

# The relay takes the dead letters nobody has counted yet (filed by a worker, the scheduler
# or an operator), a batch at a time, SKIP LOCKED so relays share them, with what a
# webhooks.delivery.dead event says of each.
ANNOUNCE = """
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
          dl.reason, dl.attempts, dl.died_at, e.url
"""

# Whether an enabled endpoint of the operations tenant takes this event type (dead-letter
# announcements nobody receives are not published).
SUBSCRIBED = """
select 1 from webhooks.endpoints
where tenant_id = %(tenant)s and enabled
  and (event_types is null or %(type)s = any(event_types))
limit 1
"""

# Arm a finished delivery for another round (`dlq replay`, `deliveries resend`): a fresh
# attempt budget and age, the same event (so the same `webhook-id`, guarantee 5), a new
# message id (any older message finds nothing), and the trigger its next attempt records.
# The SET list of an UPDATE of webhooks.deliveries d.
REARM = """
    status = 'pending', spent = 0, budget_started_at = now(), dead_reason = null,
    finished_at = null, locked_until = null, next_trigger = %(trigger)s::text,
    message_id = gen_random_uuid(),
    next_attempt_at = now() + %(lease)s * interval '1 second', updated_at = now()
"""

# Mark a dead letter as brought back, appending to its history who did it, when, and how
# (`replay` or `resend`). The SET list of an UPDATE of webhooks.dead_letters dl.
MARK_REPLAYED = """
    replayed_at = now(), replay_count = dl.replay_count + 1,
    replays = dl.replays || jsonb_build_array(jsonb_build_object(
        'at', now(), 'by', %(by)s::text, 'attempts_before', dl.attempts,
        'trigger', %(trigger)s::text))
"""

# Count a batch of attempts against their endpoints' per-second limits (the RabbitMQ
# deployments' rate limiter: no Redis there). One row per endpoint and second; returns each
# endpoint's count after this batch, so the batch's own attempts are numbered
# `count - added + 1 .. count`.
RATE_COUNT = """
insert into webhooks.rate_counts as r (endpoint_id, second, count)
select e, %(second)s, n from unnest(%(endpoints)s::uuid[], %(added)s::int[]) as t(e, n)
on conflict (endpoint_id, second) do update set count = r.count + excluded.count
returning endpoint_id::text as endpoint_id, count
"""

# Forget counts older than the window (run now and then by each worker process).
RATE_PRUNE = """
delete from webhooks.rate_counts where second < %(before)s
"""
