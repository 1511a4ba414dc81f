-- name: create_portal_link
-- Store a new portal link: only its token's SHA-256, so reading the table opens nothing.
insert into webhooks.portal_links (tenant_id, read_only, secrets, hash, expires_at, created_by)
values (%(tenant)s, %(read_only)s, %(secrets)s, %(hash)s,
        now() + make_interval(secs => %(ttl)s), %(by)s)
returning *;

-- name: forget_portal_links
-- Forget links, and the sessions they opened (cascade), that ended more than %(keep)s
-- seconds ago: run when a link is made, so the tables stay small without a job of their own.
delete from webhooks.portal_links l
where l.expires_at < now() - make_interval(secs => %(keep)s)
  and not exists (
      select 1 from webhooks.portal_sessions s
      where s.link_id = l.id and s.expires_at > now() - make_interval(secs => %(keep)s)
  );

-- name: use_portal_link
-- Spend a link: once only, and only while it is neither revoked nor expired. Two browsers
-- opening the same link race on this row; one gets it, the other nothing.
update webhooks.portal_links set used_at = now()
where hash = %(hash)s and used_at is null and revoked_at is null and expires_at > now()
returning *;

-- name: create_portal_session
-- Open the session a link was spent on, with the link's permissions.
insert into webhooks.portal_sessions
    (link_id, hash, tenant_id, admin, read_only, secrets, expires_at)
values (%(link)s, %(hash)s, %(tenant)s, %(admin)s, %(read_only)s, %(secrets)s,
        now() + make_interval(secs => %(ttl)s))
returning *;

-- name: live_portal_session
-- The live session with this hash, if any (revoked or expired ones open nothing).
select * from webhooks.portal_sessions
where hash = %(hash)s and revoked_at is null and expires_at > now();

-- name: revoke_portal_link
-- Revoke a link and every session it opened (revoking again keeps the first time).
with link as (
    update webhooks.portal_links set revoked_at = coalesce(revoked_at, now())
    where id = %(id)s
    returning *
), sessions as (
    update webhooks.portal_sessions set revoked_at = coalesce(revoked_at, now())
    where link_id in (select id from link)
    returning id
)
select link.*, (select count(*) from sessions) as sessions_revoked from link;

-- name: end_portal_session
-- Sign a session out.
update webhooks.portal_sessions set revoked_at = coalesce(revoked_at, now())
where hash = %(hash)s;

-- name: portal_tenants
-- The tenants an admin session may switch between: those with endpoints (an index scan,
-- where the outbox's distinct tenants would read the whole history).
select distinct tenant_id from webhooks.endpoints order by 1 limit %(limit)s;

-- name: event_types_published
-- The distinct event types a tenant published, each with its latest payload as an example.
-- One index probe per type through (tenant, type) would need a loose index scan; the
-- outbox is read newest first and stops at %(scan)s events, so the page stays fast however
-- long the history.
select distinct on (event_type) event_type, id, payload, created_at
from (
    select event_type, id, payload, created_at from webhooks.outbox
    where tenant_id = %(tenant)s
    order by id desc
    limit %(scan)s
) recent
order by event_type, id desc;

-- name: deliveries_by_hour
-- A tenant's attempts over the last 24 hours, by hour: how many, how many succeeded.
select date_trunc('hour', a.started_at) as hour,
       count(*) as attempts,
       count(*) filter (where a.status_code between 200 and 299) as ok
from webhooks.attempts a
where a.tenant_id = %(tenant)s and a.started_at > now() - interval '24 hours'
group by 1
order by 1;

-- name: portal_endpoint_health
-- An endpoint's last 24 hours for the portal's endpoint page: attempts, successes, the
-- last success and the last failure among them, what is pending or dead-lettered now.
-- Bounded by the 24 hours (attempts_started) and the endpoint's indexes, never by its
-- history: each attempt's delivery is looked up by its key, where a join read every
-- delivery the endpoint ever had.
select count(*) as attempts_24h,
       count(*) filter (where a.status_code between 200 and 299) as ok_24h,
       max(a.started_at) filter (where a.status_code between 200 and 299)
           as last_success_at,
       (array_agg(coalesce(a.error_kind || ': ' || a.error, 'HTTP ' || a.status_code)
                  order by a.started_at desc)
          filter (where a.status_code is null or a.status_code not between 200 and 299))[1]
           as last_error,
       (select count(*) from webhooks.deliveries d4
         where d4.endpoint_id = %(id)s and d4.status = 'pending') as pending,
       (select count(*) from webhooks.dead_letters dl
         where dl.endpoint_id = %(id)s and dl.replayed_at is null
           and dl.discarded_at is null) as dead_letters
from webhooks.attempts a
where a.started_at > now() - interval '24 hours'
  and a.tenant_id = %(tenant)s
  and (select d.endpoint_id from webhooks.deliveries d where d.id = a.delivery_id) = %(id)s;
