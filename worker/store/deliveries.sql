-- name: rearm
-- Arm a finished delivery for another round (`dlq replay`, `deliveries resend`): a fresh
-- attempt budget and age, the same event (so the same `webhook-id`, guarantee 5), a new
-- message id (any older message finds nothing), and the trigger its next attempt records.
-- The SET list of an UPDATE of webhooks.deliveries d.
status = 'pending', spent = 0, budget_started_at = now(), dead_reason = null,
finished_at = null, locked_until = null, next_trigger = %(trigger)s::text,
message_id = gen_random_uuid(),
next_attempt_at = now() + %(lease)s * interval '1 second', updated_at = now();

-- name: mark_replayed
-- Mark a dead letter as brought back, appending to its history who did it, when, and how
-- (`replay` or `resend`). The SET list of an UPDATE of webhooks.dead_letters dl.
replayed_at = now(), replay_count = dl.replay_count + 1,
replays = dl.replays || jsonb_build_array(jsonb_build_object(
    'at', now(), 'by', %(by)s::text, 'attempts_before', dl.attempts,
    'trigger', %(trigger)s::text));

-- name: list_deliveries
-- Deliveries, newest first; every filter is a nullable parameter (null: any), and %(after)s
-- is the id of the last delivery of the previous page (keyset: a page never skips or repeats
-- rows written meanwhile, and costs the same at any depth).
select d.id, d.tenant_id, d.event_id::text, o.event_type, d.endpoint_id::text, e.url,
       d.status, d.attempts, d.last_status_code, d.last_error,
       case when d.status = 'pending' then d.next_attempt_at end as next_attempt_at,
       d.created_at, d.finished_at
from webhooks.deliveries d
join webhooks.outbox o on o.id = d.event_id
join webhooks.endpoints e on e.id = d.endpoint_id
where (%(status)s::text is null or d.status = %(status)s::text)
  and (%(endpoint)s::uuid is null or d.endpoint_id = %(endpoint)s::uuid)
  and (%(event)s::uuid is null or d.event_id = %(event)s::uuid)
  and (%(tenant)s::text is null or d.tenant_id = %(tenant)s::text)
  and (%(event_type)s::text is null or o.event_type = %(event_type)s::text)
  and (%(since)s::timestamptz is null or d.created_at >= %(since)s::timestamptz)
  and (%(after)s::bigint is null or d.id < %(after)s::bigint)
order by d.id desc
limit %(limit)s offset %(offset)s;

-- name: show_delivery
-- One delivery with its event (its attempts are read apart, so the count is not selected).
select d.id, d.tenant_id, d.event_id::text as event_id, d.endpoint_id::text as endpoint_id,
       d.status, d.spent, d.budget_started_at, d.next_attempt_at,
       d.message_id::text as message_id, d.locked_until, d.next_trigger, d.last_status_code,
       d.last_error, d.dead_reason, d.event_created_at, d.created_at, d.updated_at,
       d.finished_at, d.circuit_wait, o.event_type, o.payload, e.url, e.circuit_open_until
from webhooks.deliveries d
join webhooks.outbox o on o.id = d.event_id
join webhooks.endpoints e on e.id = d.endpoint_id
where d.id = %(id)s and (%(tenant)s::text is null or d.tenant_id = %(tenant)s);

-- name: delivery_attempts
-- Every attempt of one delivery, in order.
select number, trigger, started_at, duration_seconds, status_code, error_kind, error,
       response_body
from webhooks.attempts where delivery_id = %(id)s order by number;

-- name: lock_dead_letter
-- Lock a delivery's dead letter before the delivery itself (`deliveries resend`), in the
-- order `dlq replay` locks them, so the two never deadlock.
select 1 from webhooks.dead_letters dl
where dl.delivery_id = %(id)s and (%(tenant)s::text is null or dl.tenant_id = %(tenant)s)
for update;

-- name: lock_delivery
-- Lock a delivery and read what decides whether it may be retried or resent.
select d.id, d.status, d.event_id::text as event_id, d.endpoint_id::text as endpoint_id,
       coalesce(d.locked_until > now(), false) as in_flight, e.enabled,
       e.circuit_open_until
from webhooks.deliveries d
join webhooks.endpoints e on e.id = d.endpoint_id
where d.id = %(id)s and (%(tenant)s::text is null or d.tenant_id = %(tenant)s)
for update of d;

-- name: retry_now
-- A pending delivery becomes due now with a new message id: the message pushed next is the
-- only one entitled to its next attempt (a message already queued for it finds nothing), so
-- a retry costs one attempt, no more. If the push fails, the scheduler's next pass finds it
-- due and enqueues it.
update webhooks.deliveries d
set message_id = gen_random_uuid(), next_attempt_at = now(), updated_at = now()
where d.id = %(id)s and d.status = 'pending'
returning d.message_id::text as message_id;

-- name: resend
-- Send a finished delivery again (`deliveries resend`): its dead letter, if current, is
-- marked replayed as a replay would, and the delivery is re-armed.
with marked as (
    update webhooks.dead_letters dl
    set
        -- include: mark_replayed
    where dl.delivery_id = %(id)s and dl.replayed_at is null
)
update webhooks.deliveries d
set
    -- include: rearm
where d.id = %(id)s and d.status in ('succeeded', 'dead')
returning d.message_id::text as message_id;
