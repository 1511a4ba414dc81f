-- name: backlog
-- Every backlog gauge of the relay's /metrics in one query. Each part reads a partial index
-- (outbox_unrelayed, deliveries_due, dead_letters_current) or the small endpoints table.
with outbox as (
    select count(*) as pending, min(created_at) as oldest
    from webhooks.outbox
    where relayed_at is null
), deliveries as (
    select count(*) as pending,
           min(next_attempt_at) filter (where next_attempt_at <= now()) as oldest_due
    from webhooks.deliveries
    where status = 'pending'
)
select outbox.pending as outbox_pending,
       coalesce(greatest(extract(epoch from now() - outbox.oldest), 0), 0)
           as outbox_oldest_age_seconds,
       deliveries.pending as deliveries_pending,
       coalesce(greatest(extract(epoch from now() - deliveries.oldest_due), 0), 0)
           as deliveries_due_oldest_age_seconds,
       (select count(*) from webhooks.dead_letters where replayed_at is null
                                                    and discarded_at is null)
           as dead_letters_current,
       (select count(*) from webhooks.endpoints where not enabled) as endpoints_disabled,
       (select count(*) from webhooks.endpoints
         where circuit_open_until is not null and enabled) as endpoints_circuit_open,
       -- dead_letters_ordering: only the current dead letters of ordered endpoints.
       (select count(distinct (l.endpoint_id, l.ordering_key))
          from webhooks.dead_letters l
         where l.ordering_key is not null and l.replayed_at is null and l.discarded_at is null
           and exists (select 1 from webhooks.deliveries w
                        where w.endpoint_id = l.endpoint_id
                          and w.ordering_key = l.ordering_key and w.status = 'pending'
                          and w.order_wait and w.event_id > l.event_id))
           as ordering_keys_blocked
from outbox, deliveries;

-- name: local_statement_timeout
-- Bound the backlog query by a transaction-local statement_timeout, which works through
-- PgBouncer in any pooling mode (a session setting would leak to other clients).
select set_config('statement_timeout', %(timeout)s, true);
