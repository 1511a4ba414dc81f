-- name: dead_letters_selected
-- Which dead letters a `dlq` selection means (ops.dlq.Selection.params): every filter is a
-- nullable parameter, null meaning "any". Shared by the list, the count, the disabled-endpoint
-- check and the replay, so a dry run counts exactly what a replay takes. Postgres plans each
-- call with its values, so a null filter drops out and a given one keeps its index
-- (dead_letters_current for an endpoint, dead_letters_died otherwise; checked with EXPLAIN on
-- 100k dead letters, where a generic plan's seq scan is costed higher and never chosen). A
-- WHERE condition over webhooks.dead_letters dl.
(%(ids)s::bigint[] is null or dl.delivery_id = any(%(ids)s::bigint[]))
and (%(endpoint)s::uuid is null or dl.endpoint_id = %(endpoint)s::uuid)
and (%(event_type)s::text is null or dl.event_type = %(event_type)s::text)
and (%(since)s::timestamptz is null or dl.died_at >= %(since)s::timestamptz)
and (%(reason)s::text is null or dl.reason = %(reason)s::text)
and (%(tenant)s::text is null or dl.tenant_id = %(tenant)s::text);

-- name: list_dead_letters
-- Dead letters, newest first (replayed ones too with %(history)s); %(after_at)s and
-- %(after_id)s are the last row of the previous page (keyset pagination).
select dl.delivery_id, dl.tenant_id, dl.event_id::text, dl.endpoint_id::text, e.url,
       dl.event_type, dl.reason, dl.attempts, dl.last_status_code, dl.last_error, dl.died_at,
       dl.replayed_at, dl.replay_count, dl.discarded_at, dl.ordering_key
from webhooks.dead_letters dl
join webhooks.endpoints e on e.id = dl.endpoint_id
where ((dl.replayed_at is null and dl.discarded_at is null) or %(history)s)
  and (%(after_at)s::timestamptz is null
       or (dl.died_at, dl.delivery_id) < (%(after_at)s::timestamptz, %(after_id)s::bigint))
  and
  -- include: dead_letters_selected
order by dl.died_at desc, dl.delivery_id desc
limit %(limit)s offset %(offset)s;

-- name: show_dead_letter
-- One dead letter with its event, endpoint and delivery state (its attempts are read
-- apart, so the count is not selected).
select dl.delivery_id, dl.tenant_id, dl.event_id::text as event_id,
       dl.endpoint_id::text as endpoint_id, dl.event_type, dl.reason, dl.last_status_code,
       dl.last_error, dl.died_at, dl.replayed_at, dl.replay_count, dl.replays, dl.announced_at,
       e.url, e.enabled, e.disabled_reason, o.payload, o.created_at as event_created_at,
       d.status as delivery_status, dl.ordering_key, dl.discarded_at, dl.discarded_by,
       -- include: overtaken
       as order_broken
from webhooks.dead_letters dl
join webhooks.endpoints e on e.id = dl.endpoint_id
join webhooks.outbox o on o.id = dl.event_id
join webhooks.deliveries d on d.id = dl.delivery_id
where dl.delivery_id = %(id)s and (%(tenant)s::text is null or dl.tenant_id = %(tenant)s);

-- name: count_dead_letters
-- How many current dead letters a selection holds (a replay's dry run).
select count(*) as n from webhooks.dead_letters dl
where dl.replayed_at is null and dl.discarded_at is null and
  -- include: dead_letters_selected
;

-- name: current_dead_letter_ids
-- Which of the ids asked for name a current dead letter (the tenant filter applies), so an
-- unknown id is refused before anything is written.
select dl.delivery_id from webhooks.dead_letters dl
where dl.replayed_at is null and dl.discarded_at is null and dl.delivery_id = any(%(ids)s::bigint[])
  and (%(tenant)s::text is null or dl.tenant_id = %(tenant)s::text);

-- name: disabled_selected_endpoints
-- The disabled endpoints a selection's current dead letters go to: a replay to them is
-- refused unless the operator asks to enable them.
select distinct e.id::text as id, e.url
from webhooks.dead_letters dl join webhooks.endpoints e on e.id = dl.endpoint_id
where dl.replayed_at is null and dl.discarded_at is null and not e.enabled and
  -- include: dead_letters_selected
;

-- name: enable_endpoints
-- Enable the endpoints a replay was asked to enable, starting each afresh: no failure streak,
-- circuit closed.
update webhooks.endpoints
set enabled = true, disabled_reason = null, disabled_at = null, failing_since = null,
    consecutive_failures = 0, circuit_open_until = null, circuit_cooldown = null,
    circuit_probe_id = null, circuit_probe_until = null, updated_at = now()
where id = any(%(ids)s::uuid[]);

-- name: replay_batch
-- Replay one batch: take up to %(batch)s current dead letters of the selection (SKIP LOCKED,
-- so two replays of one selection never take the same row), re-arm their deliveries and mark
-- them replayed in one statement. The last row carries only the count marked, so an empty
-- batch still answers and ends the loop.
with picked as (
    select dl.delivery_id
    from webhooks.dead_letters dl
    where dl.replayed_at is null and dl.discarded_at is null and
        -- include: dead_letters_selected
    order by dl.delivery_id
    limit %(batch)s
    for update of dl skip locked
), revived as (
    update webhooks.deliveries d
    set
        -- include: rearm
    from picked
    where d.id = picked.delivery_id and d.status = 'dead'
    returning d.id, d.message_id::text as message_id,
              -- include: overtaken
              as out_of_order
), marked as (
    update webhooks.dead_letters dl
    set
        -- include: mark_replayed
    from picked
    where dl.delivery_id = picked.delivery_id
    returning dl.delivery_id
)
select (select count(*) from marked) as marked, id, message_id, out_of_order from revived
union all
select (select count(*) from marked), null, null, null;

-- name: overtaken
-- Whether a later event of a dead delivery's ordering key has been sent since it died (its
-- key went on: WEBHOOKS_ORDERED_ON_DEATH=continue): it broke the order, and a replay
-- arrives out of order. An expression over the delivery, webhooks.deliveries d.
(d.ordering_key is not null and exists (
    select 1 from webhooks.deliveries later
    where later.endpoint_id = d.endpoint_id and later.ordering_key = d.ordering_key
      and later.event_id > d.event_id and later.attempts > 0))

-- name: discard_batch
-- Give up one batch of the selection for good (`dlq discard`): its dead letters leave the
-- current ones (lists, counts, replays) and, under WEBHOOKS_ORDERED_ON_DEATH=block, no longer
-- hold their ordering key. SKIP LOCKED, as a replay.
with picked as (
    select dl.delivery_id
    from webhooks.dead_letters dl
    where dl.replayed_at is null and dl.discarded_at is null and
        -- include: dead_letters_selected
    order by dl.delivery_id
    limit %(batch)s
    for update of dl skip locked
)
update webhooks.dead_letters dl
set discarded_at = now(), discarded_by = %(by)s::text
from picked
where dl.delivery_id = picked.delivery_id
returning dl.delivery_id;
