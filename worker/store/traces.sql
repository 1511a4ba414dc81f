-- name: fanned_out_traces
-- The traced events among those whose deliveries the relay just created (by delivery id),
-- each with its trace context and how many deliveries it got: one fan-out span each
-- (worker.observe.tracing). Run only when tracing is on, after the fan-out committed.
select o.id::text as event_id, o.tenant_id, o.event_type, o.trace_context,
       count(*) as deliveries
from webhooks.deliveries d
join webhooks.outbox o on o.id = d.event_id
where d.id = any(%(ids)s) and o.trace_context is not null
group by o.id;

-- name: event_traces
-- The trace contexts of the events of claimed deliveries: the parents of their attempt
-- spans. Run only when tracing is on, one statement per claimed batch.
select id::text as event_id, trace_context
from webhooks.outbox
where id = any(%(ids)s::uuid[]) and trace_context is not null;
