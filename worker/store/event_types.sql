-- name: insert_event_type
-- A new catalogue entry; nothing when the name is taken (the caller says so).
insert into webhooks.event_types (name, description, group_name)
values (%(name)s, %(description)s, %(group)s)
on conflict (name) do nothing
returning name;

-- name: lock_event_type
-- The entry, locked until the transaction ends: a schema version is numbered under it, so
-- two writers never pick the same number.
select name from webhooks.event_types where name = %(name)s for update;

-- name: update_event_type
-- Change the description and group (null keeps each) and the flags (null keeps each).
update webhooks.event_types
set description = coalesce(%(description)s, description),
    group_name = case when %(set_group)s then %(group)s else group_name end,
    deprecated = coalesce(%(deprecated)s, deprecated),
    archived = coalesce(%(archived)s, archived),
    updated_at = now()
where name = %(name)s
returning name;

-- name: add_event_type_schema
-- The next schema version of a type (the first is 1); earlier versions are kept.
insert into webhooks.event_type_schemas (event_type, version, schema, example)
select %(name)s, coalesce(max(version), 0) + 1, %(schema)s, %(example)s
from webhooks.event_type_schemas
where event_type = %(name)s
returning version;

-- name: set_event_type_example
-- Replace the example of one schema version (checked against that version by the caller).
update webhooks.event_type_schemas set example = %(example)s
where event_type = %(name)s and version = %(version)s;

-- name: event_types
-- The catalogue, by name, each entry with its latest schema and example: one page after
-- the name `after`, in a group or all, archived entries only when asked.
select t.name, t.description, t.group_name as "group", t.deprecated, t.archived,
       s.version as latest_version, s.schema, s.example, t.created_at, t.updated_at
from webhooks.event_types t
left join lateral (
    select version, schema, example from webhooks.event_type_schemas
    where event_type = t.name order by version desc limit 1
) s on true
where (%(name)s::text is null or t.name = %(name)s)
  and (%(after)s::text is null or t.name > %(after)s)
  and (%(group)s::text is null or t.group_name = %(group)s)
  and (%(archived)s or not t.archived or %(name)s::text is not null)
order by t.name
limit %(limit)s;

-- name: event_type_schemas
-- Every schema version of a type, oldest first.
select version, schema, example, created_at
from webhooks.event_type_schemas
where event_type = %(name)s
order by version;

-- name: archived_event_types
-- The names of archived types (an endpoint subscribing to one is told so).
select name from webhooks.event_types where archived order by name;
