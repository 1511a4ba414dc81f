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
  and (event_types is null or %(type)s = any(event_types))
limit 1;
