"""SQL shared by the registry, the relay, the workers and the CLI, kept in one place."""

# Disable an endpoint and move its pending deliveries to the dead letters in one statement,
# so none stays pending for ever (guarantee 3) and a replay can bring them back.
DISABLE_ENDPOINT = """
with ep as (
    update webhooks.endpoints
    set enabled = false, disabled_reason = %(reason)s, disabled_at = now(), updated_at = now()
    where id = %(id)s and (%(tenant)s::text is null or tenant_id = %(tenant)s)
    returning *
), dead as (
    update webhooks.deliveries d
    set status = 'dead', finished_at = now(), updated_at = now(),
        message_id = null
    from ep
    where d.endpoint_id = ep.id and d.status = 'pending'
    returning d.id, d.tenant_id, d.event_id, d.endpoint_id, d.attempts,
              d.last_status_code, d.last_error
), letters as (
    insert into webhooks.dead_letters as dl
        (delivery_id, tenant_id, event_id, endpoint_id, event_type, reason, attempts,
         last_status_code, last_error)
    select dead.id, dead.tenant_id, dead.event_id, dead.endpoint_id, o.event_type,
           'endpoint_disabled', dead.attempts, dead.last_status_code, dead.last_error
    from dead join webhooks.outbox o on o.id = dead.event_id
    on conflict (delivery_id) do update
    set reason = excluded.reason, attempts = excluded.attempts,
        last_status_code = excluded.last_status_code, last_error = excluded.last_error,
        died_at = now(), replayed_at = null
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

# Push back the check of deliveries whose message Redis still holds (a long queue).
EXTEND_LEASE = """
update webhooks.deliveries
set next_attempt_at = now() + %(lease)s * interval '1 second'
where id = any(%(ids)s) and status = 'pending'
"""
