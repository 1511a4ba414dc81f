-- name: bench_truncate
-- `webhooks bench` empties the tables between phases of a run; the endpoints stay. The bench
-- runs in a database of its own, created for the run and dropped after it.
truncate webhooks.attempts, webhooks.dead_letters, webhooks.deliveries, webhooks.outbox;

-- name: bench_state
-- Unrelayed events and deliveries by status, for the bench's waits and its correctness check.
select (select count(*) from webhooks.outbox where relayed_at is null) as unrelayed,
       count(*) as deliveries,
       count(*) filter (where status = 'pending') as pending,
       count(*) filter (where status = 'succeeded') as succeeded,
       count(*) filter (where status = 'dead') as dead,
       coalesce(sum(attempts), 0) as attempts
from webhooks.deliveries;

-- name: bench_listening
-- Whether a relay started at `since` listens yet: the relay listens just before its first
-- fan-out, so the bench times the relay from there, not from interpreter start-up.
select count(*) as n from pg_stat_activity
where datname = current_database()
  and starts_with(lower(query), 'listen ')
  and backend_start >= %(since)s;

-- name: bench_worker_connections
-- Every connection a worker process opens is named `webhooks-worker...` (worker.engine.actors);
-- the bench's own connections are not.
select count(*) as n from pg_stat_activity
where datname = current_database() and starts_with(application_name, 'webhooks-worker');

-- name: bench_unsuccessful
-- Why attempts did not succeed: 500s from --fail-rate, and anything else (which, with no
-- --fail-rate, is what explains a duplicate). The five commonest.
select error_kind, coalesce(status_code::text, left(error, 120)) as error, count(*) as n
from webhooks.attempts
where status_code is null or status_code not between 200 and 299
group by 1, 2 order by n desc limit 5;

-- name: bench_stages
-- When each successful delivery was created by the relay and when its successful attempt
-- started in a worker, for the latency breakdown.
select o.id::text as event_id, d.endpoint_id::text as endpoint_id,
       extract(epoch from d.created_at)::float8 as created,
       extract(epoch from a.started_at)::float8 as started
from webhooks.deliveries d
join webhooks.outbox o on o.id = d.event_id
join webhooks.attempts a on a.delivery_id = d.id and a.status_code between 200 and 299
where d.status = 'succeeded';

-- name: bench_server
-- The Postgres version and the settings that change the figures most, for the report.
select current_setting('server_version') as v,
       current_setting('synchronous_commit') as sc,
       current_setting('fsync') as f;

-- name: dev_attempts
-- `webhooks dev` prints one line per attempt as it is recorded, oldest first.
select a.id, a.delivery_id, a.number, a.status_code, a.error_kind, a.error,
       a.duration_seconds, o.event_type, e.url, d.status, d.next_attempt_at
from webhooks.attempts a
join webhooks.deliveries d on d.id = a.delivery_id
join webhooks.outbox o on o.id = d.event_id
join webhooks.endpoints e on e.id = d.endpoint_id
where a.id > %(after)s
order by a.id;

-- name: dev_dead_letters
-- The dead letters not replayed yet; `webhooks dev` announces each once.
select delivery_id, reason, attempts from webhooks.dead_letters
where replayed_at is null and discarded_at is null;

-- name: dev_demo_outcomes
-- The demo's own events' deliveries per state, so `webhooks dev` says once that the demo is
-- complete (none pending any more).
select status, count(*) as n
from webhooks.deliveries
where event_id = any(%(events)s::uuid[])
group by status;
