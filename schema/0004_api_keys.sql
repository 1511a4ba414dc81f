-- API keys of the management HTTP API (`webhooks api`). A key is shown once when made and
-- only its SHA-256 is kept, so a copy of the database gives no usable key. tenant_id null is
-- an admin key (every tenant); otherwise the key sees and touches that tenant only.
create table webhooks.api_keys (
    id           bigint generated always as identity primary key,
    name         text not null,
    tenant_id    text,
    hash         text not null unique,
    created_at   timestamptz not null default now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
