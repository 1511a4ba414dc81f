-- The tenant portal (`/portal`): single-use links made by the platform's backend, and the
-- sessions they open. Only SHA-256 hashes of the tokens are kept, so a copy of the database
-- gives no usable link or session. tenant_id null is an admin link (every tenant, with a
-- tenant switcher). Revoking a link revokes the sessions it opened.
create table webhooks.portal_links (
    id          bigint generated always as identity primary key,
    tenant_id   text,
    read_only   boolean not null default false,
    secrets     boolean not null default true,
    hash        text not null unique,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    used_at     timestamptz,
    revoked_at  timestamptz,
    created_by  text not null default ''
);

create table webhooks.portal_sessions (
    id          bigint generated always as identity primary key,
    link_id     bigint not null references webhooks.portal_links (id) on delete cascade,
    hash        text not null unique,
    tenant_id   text,
    admin       boolean not null,
    read_only   boolean not null,
    secrets     boolean not null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    revoked_at  timestamptz
);

create index portal_sessions_link on webhooks.portal_sessions (link_id);

-- The portal's overview and endpoint pages read the last 24 hours of attempts. Attempts are
-- appended in time order, so a BRIN index finds those hours for a few pages of index,
-- where a scan read the whole history; it costs next to nothing to maintain.
create index attempts_started on webhooks.attempts using brin (started_at);
