-- name: disable_endpoint
-- Disable an endpoint and kill its pending deliveries in one statement (the trigger files
-- their dead letters, reason endpoint_disabled), so none stays pending for ever (guarantee 3)
-- and a replay can bring them back once the endpoint is fixed.
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
select ep.*, (select count(*) from dead) as dead_lettered from ep;

-- name: close_circuit
-- An operator closes a circuit (endpoint reset or enable, dlq replay --endpoint): the
-- endpoint starts afresh (its failure streak forgotten, so one failure cannot disable it at
-- once) and its parked deliveries are due now.
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
select (select count(*) from ep) as endpoints, (select count(*) from unparked) as unparked;

-- name: subscribed
-- Whether an enabled endpoint of the operations tenant takes this event type (dead-letter
-- announcements nobody receives are not published).
select 1 from webhooks.endpoints
where tenant_id = %(tenant)s and enabled
  and (event_types is null or %(type)s = any(event_types) or %(type)s ~ event_type_regex)
limit 1;

-- name: sealed_secrets
-- Every stored secret and custom header value sealed by the vault (its text starts with
-- %(prefix)s), so a key that cannot open one is refused before any new one is written.
select s.value->>'secret' as secret from webhooks.endpoints e
cross join lateral jsonb_array_elements(e.secrets) s
where s.value->>'secret' like %(prefix)s
union all
select h.value as secret from webhooks.endpoints e
cross join lateral jsonb_each_text(e.headers) h
where h.value like %(prefix)s;

-- name: insert_endpoint
-- Create an endpoint with its first (sealed) secret.
insert into webhooks.endpoints
    (id, tenant_id, url, description, event_types, event_type_regex, secrets, headers,
     rate_limit, filter, filter_path, filter_vars, ordered)
values (%(id)s, %(tenant)s, %(url)s, %(description)s, %(event_types)s, %(event_type_regex)s,
        %(secrets)s, %(headers)s, %(rate_limit)s, %(filter)s, %(filter_path)s::jsonpath,
        %(filter_vars)s, %(ordered)s)
returning *;

-- name: update_endpoint
-- Change the fields an operator gave and keep the others: each field comes with a flag
-- %(set_x)s saying whether it was given, since null is a value of its own (every event type,
-- no rate limit, no filter). Event types come with their regex, a filter with its compiled
-- form.
update webhooks.endpoints
set url = case when %(set_url)s then %(url)s::text else url end,
    event_types = case when %(set_event_types)s then %(event_types)s::text[] else event_types end,
    event_type_regex = case when %(set_event_types)s then %(event_type_regex)s::text
                            else event_type_regex end,
    filter = case when %(set_filter)s then %(filter)s::jsonb else filter end,
    filter_path = case when %(set_filter)s then %(filter_path)s::jsonpath else filter_path end,
    filter_vars = case when %(set_filter)s then %(filter_vars)s::jsonb else filter_vars end,
    headers = case when %(set_headers)s then %(headers)s::jsonb else headers end,
    rate_limit = case when %(set_rate_limit)s then %(rate_limit)s::integer else rate_limit end,
    description = case when %(set_description)s then %(description)s::text else description end,
    ordered = case when %(set_ordered)s then %(ordered)s::boolean else ordered end,
    updated_at = now()
where id = %(id)s and (%(tenant)s::text is null or tenant_id = %(tenant)s)
returning *;

-- name: enable_endpoint
-- Deliver to an endpoint again, forgetting why and since when it failed (its circuit is
-- closed by close_circuit in the same transaction).
update webhooks.endpoints
set enabled = true, disabled_reason = null, disabled_at = null, failing_since = null,
    updated_at = now()
where id = %(id)s and (%(tenant)s::text is null or tenant_id = %(tenant)s)
returning *;

-- name: list_endpoints
-- Endpoints (of one tenant when given), oldest first; %(after)s is the last id of the
-- previous page (keyset pagination), %(limit)s null returns them all.
select * from webhooks.endpoints
where (%(tenant)s::text is null or tenant_id = %(tenant)s)
  and (%(after)s::uuid is null or id > %(after)s::uuid)
order by id
limit %(limit)s;

-- name: endpoint
-- One endpoint (of one tenant when given).
select * from webhooks.endpoints
where id = %(id)s and (%(tenant)s::text is null or tenant_id = %(tenant)s);

-- name: lock_endpoint
-- One endpoint, locked for the rest of the transaction (secret rotation, deletion).
select * from webhooks.endpoints
where id = %(id)s and (%(tenant)s::text is null or tenant_id = %(tenant)s)
for update;

-- name: endpoint_health
-- An endpoint's last 24 hours for `endpoint show`: attempts and successes, its last success
-- and last error, and what is pending or dead-lettered now.
select count(*) as attempts_24h,
       count(*) filter (where a.status_code between 200 and 299) as ok_24h,
       (select max(a2.started_at) from webhooks.attempts a2
          join webhooks.deliveries d2 on d2.id = a2.delivery_id
         where d2.endpoint_id = %(id)s and a2.status_code between 200 and 299)
           as last_success_at,
       (select d3.last_error from webhooks.deliveries d3
         where d3.endpoint_id = %(id)s and d3.last_error is not null
         order by d3.updated_at desc limit 1) as last_error,
       (select count(*) from webhooks.deliveries d4
         where d4.endpoint_id = %(id)s and d4.status = 'pending') as pending,
       (select count(*) from webhooks.dead_letters dl
         where dl.endpoint_id = %(id)s and dl.replayed_at is null
           and dl.discarded_at is null)
           as dead_letters
from webhooks.attempts a
join webhooks.deliveries d on d.id = a.delivery_id
where d.endpoint_id = %(id)s and a.started_at > now() - interval '24 hours';

-- name: set_secrets
-- Replace an endpoint's secrets (rotation, re-encryption).
update webhooks.endpoints set secrets = %(secrets)s, updated_at = now() where id = %(id)s;

-- name: lock_all_secrets
-- Every endpoint's secrets and custom headers, locked, so re-encryption seals all of them or
-- none.
select id, secrets, headers from webhooks.endpoints order by id for update;

-- name: set_sealed
-- Replace an endpoint's secrets and custom headers with their re-encrypted forms.
update webhooks.endpoints set secrets = %(secrets)s, headers = %(headers)s, updated_at = now()
where id = %(id)s;

-- name: endpoint_dependents
-- What deleting an endpoint deletes with it.
select (select count(*) from webhooks.deliveries where endpoint_id = %(id)s) as deliveries,
       (select count(*) from webhooks.deliveries
         where endpoint_id = %(id)s and status = 'pending') as pending,
       (select count(*) from webhooks.dead_letters
         where endpoint_id = %(id)s and replayed_at is null
           and discarded_at is null) as dead_letters;

-- name: delete_endpoint
-- Delete an endpoint; its deliveries, attempts and dead letters go by cascade.
delete from webhooks.endpoints where id = %(id)s;
