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
        updated_at = now(), message_id = null
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
# commit; until `lease` has passed the scheduler leaves it to that message.
FAN_OUT = """
with claimed as (
    select id, tenant_id, event_type, created_at
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
        (tenant_id, event_id, endpoint_id, event_created_at, message_id, next_attempt_at)
    select c.tenant_id, c.id, e.id, c.created_at, gen_random_uuid(),
           now() + %(lease)s * interval '1 second'
    from claimed c
    join webhooks.endpoints e
      on e.tenant_id = c.tenant_id
     and e.enabled
     and (e.event_types is null or c.event_type = any(e.event_types))
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
RECHECK_QUEUED = """
update webhooks.deliveries
set next_attempt_at = now()
where status = 'pending' and message_id is not null and next_attempt_at > now()
  and (locked_until is null or locked_until < now())
"""

# Push back the check of deliveries whose message Redis still holds (a long queue).
EXTEND_LEASE = """
update webhooks.deliveries
set next_attempt_at = now() + %(lease)s * interval '1 second'
where id = any(%(ids)s) and status = 'pending'
"""

# A worker claims the delivery its message names: only the message the delivery expects
# (a stale or duplicate message finds nothing, guarantee 5), only while pending, and only if
# no other worker holds it. The lock outlives one attempt; the scheduler leaves the delivery
# alone until it expires (a worker killed mid-attempt is retried after that).
CLAIM = """
update webhooks.deliveries d
set locked_until = now() + %(lock)s * interval '1 second',
    next_attempt_at = greatest(d.next_attempt_at, now() + %(lock)s * interval '1 second')
from webhooks.outbox o, webhooks.endpoints e
where d.id = %(id)s
  and d.message_id = %(message_id)s::uuid
  and d.status = 'pending'
  and (d.locked_until is null or d.locked_until < now())
  and o.id = d.event_id
  and e.id = d.endpoint_id
returning d.id, d.tenant_id, d.attempts, d.spent, d.budget_started_at, d.next_trigger,
          d.event_created_at, o.id::text as event_id, o.event_type, o.payload::text as payload,
          e.id::text as endpoint_id, e.tenant_id as endpoint_tenant, e.url, e.secrets,
          e.headers, e.rate_limit, e.enabled, e.failing_since, now() as now
"""

# Record one HTTP attempt and the delivery's new state in one statement: the attempt row is
# written with the state change, never after it (guarantee 4), and never edited. The counters
# move even if something else finished the delivery meanwhile; the state only if pending.
RECORD = """
with prev as (
    select id, status from webhooks.deliveries where id = %(id)s for update
), upd as (
    update webhooks.deliveries d
    set attempts = d.attempts + 1,
        spent = d.spent + %(spend)s,
        status = case when prev.status = 'pending' then %(status)s else d.status end,
        dead_reason = case when prev.status = 'pending' then %(dead_reason)s
                           else d.dead_reason end,
        next_attempt_at = case when prev.status = 'pending' and %(next)s::timestamptz is not null
                               then %(next)s::timestamptz else d.next_attempt_at end,
        finished_at = case when prev.status = 'pending' and %(status)s <> 'pending'
                           then now() else d.finished_at end,
        next_trigger = 'scheduled',
        message_id = null,
        locked_until = null,
        last_status_code = %(status_code)s,
        last_error = %(error)s,
        updated_at = now()
    from prev
    where d.id = prev.id
    returning d.id, d.attempts, d.status
), attempt as (
    insert into webhooks.attempts
        (delivery_id, tenant_id, number, trigger, started_at, duration_seconds, status_code,
         response_body, error_kind, error)
    select upd.id, %(tenant)s, upd.attempts, %(trigger)s, %(started)s, %(duration)s,
           %(status_code)s, %(body)s, %(error_kind)s, %(error)s
    from upd
), health as (
    update webhooks.endpoints
    set failing_since = case when %(ok)s then null else now() end
    where id = %(endpoint_id)s
      and %(health)s
      and case when %(ok)s then failing_since is not null else failing_since is null end
)
select upd.attempts, upd.status, prev.status as was from upd, prev
"""

# Put a delivery back without an attempt (throttle, open circuit, rate limit, busy endpoint),
# or kill it without one (too old, endpoint disabled).
RELEASE = """
update webhooks.deliveries
set next_attempt_at = coalesce(%(next)s::timestamptz, next_attempt_at),
    status = %(status)s,
    dead_reason = %(dead_reason)s,
    finished_at = case when %(status)s = 'dead' then now() else null end,
    message_id = null,
    locked_until = null,
    updated_at = now()
where id = %(id)s and status = 'pending'
returning id
"""
