-- name: prunable_events
-- Which events may be pruned, for `prune` and its dry run alike: created before the cutoff
-- (event ids are UUIDv7, so "older than the cutoff" is an id range on the primary key),
-- relayed, and with no pending delivery (and no dead one unless %(include_dead)s), so nothing
-- an operator may still replay disappears. A WHERE condition over webhooks.outbox o.
o.id < %(boundary)s and o.relayed_at is not null
and not exists (
    select 1 from webhooks.deliveries d
    where d.event_id = o.id
      and (d.status = 'pending' or (d.status = 'dead' and not %(include_dead)s)));

-- name: prune_counts
-- What goes with the events in `doomed`, counted the same way for the deletion and its dry
-- run. A select list over a CTE doomed(id).
(select count(*) from webhooks.deliveries d where d.event_id in (select id from doomed))
    as deliveries,
(select count(*) from webhooks.attempts a
   join webhooks.deliveries d on d.id = a.delivery_id
  where d.event_id in (select id from doomed)) as attempts,
(select count(*) from webhooks.dead_letters dl
  where dl.event_id in (select id from doomed)) as dead_letters;

-- name: prune_batch
-- Delete one batch of prunable events (their deliveries, attempts and dead letters go by
-- cascade) in one short transaction, skipping rows locked by live work; count what went.
with doomed as (
    select o.id
    from webhooks.outbox o
    where
        -- include: prunable_events
    order by o.id
    limit %(batch)s
    for update skip locked
), counted as (
    select
        -- include: prune_counts
), gone as (
    delete from webhooks.outbox o using doomed where o.id = doomed.id returning o.id
)
select (select count(*) from gone) as events, deliveries, attempts, dead_letters from counted;

-- name: prune_dry_run
-- Count what `prune` would delete, without locking or deleting anything.
with doomed as (
    select o.id from webhooks.outbox o
    where
        -- include: prunable_events
)
select (select count(*) from doomed) as events,
    -- include: prune_counts
;
