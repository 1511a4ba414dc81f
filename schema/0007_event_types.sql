-- The platform's event-type catalogue, read by every tenant: what each event type means and
-- what its payload (`data`) looks like. A type keeps every JSON Schema version it was given;
-- the latest is the highest version, and an example is checked against its version's schema.
-- `deprecated` types still publish (and say so); `archived` ones are refused when producers
-- run with WEBHOOKS_EVENT_TYPES=known.
create table webhooks.event_types (
    name         text primary key,
    description  text not null default '',
    group_name   text,
    deprecated   boolean not null default false,
    archived     boolean not null default false,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);

create table webhooks.event_type_schemas (
    event_type   text not null references webhooks.event_types (name) on delete cascade,
    version      integer not null check (version >= 1),
    schema       jsonb not null,
    example      jsonb,
    created_at   timestamptz not null default now(),
    primary key (event_type, version)
);
