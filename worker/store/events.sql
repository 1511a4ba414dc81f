-- name: list_events
-- Events without their payloads, newest first; %(after)s is the id of the last event of the
-- previous page (keyset pagination; ids are UUIDv7, so id order is creation order).
select id::text as id, tenant_id, event_type, idempotency_key, ordering_key, created_at,
       relayed_at
from webhooks.outbox
where (%(tenant)s::text is null or tenant_id = %(tenant)s::text)
  and (%(event_type)s::text is null or event_type = %(event_type)s::text)
  and (%(after)s::uuid is null or id < %(after)s::uuid)
-- The table's uuid column, not the text id of the select list: ordering by the text read
-- and sorted the whole outbox (400 ms at a million events) where the key's index stops at
-- the page's last row.
order by outbox.id desc
limit %(limit)s;

-- name: show_event
-- One event with its payload.
select id::text as id, tenant_id, event_type, idempotency_key, ordering_key, payload,
       created_at, relayed_at
from webhooks.outbox
where id = %(id)s and (%(tenant)s::text is null or tenant_id = %(tenant)s::text);

-- name: create_test_event
-- A test event (`endpoint test`) addressed to one endpoint and written already relayed, so
-- the relay never fans it out to the tenant's other endpoints, with its one delivery created
-- in the same statement; the caller claims and attempts it at once.
with event as (
    insert into webhooks.outbox (id, tenant_id, event_type, payload, endpoint_id, relayed_at)
    values (%(event_id)s, %(tenant)s, %(type)s, %(payload)s, %(endpoint)s, now())
    returning id, tenant_id, created_at, endpoint_id
)
insert into webhooks.deliveries
    (tenant_id, event_id, endpoint_id, event_created_at, message_id, next_attempt_at,
     next_trigger)
select tenant_id, id, endpoint_id, created_at, gen_random_uuid(),
       now() + %(lease)s * interval '1 second', 'test'
from event
returning id, message_id::text as message_id;

-- name: published_before
-- Whether an event the caller just published existed before the caller's transaction: a
-- repeated idempotency key returns the first event's id. Run in that same transaction, where
-- now() is its start, so a row this transaction inserted has created_at = now().
select created_at < now() as repeated
from webhooks.outbox
where id = %(id)s;
