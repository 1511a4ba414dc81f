-- name: migrations_bootstrap
-- The schema and the table recording applied migrations, made before the first migration
-- runs (so `0001_initial.sql` needs neither).
create schema if not exists webhooks;
create table if not exists webhooks.schema_migrations (
    version    integer primary key,
    name       text not null,
    checksum   text not null,
    applied_at timestamptz not null default now()
);

-- name: migrations_table
-- Whether the migrations table exists yet (a database never migrated has none).
select to_regclass('webhooks.schema_migrations') as t;

-- name: applied_migrations
-- Every migration applied, with the checksum it had, to refuse one edited afterwards.
select version, name, checksum, applied_at from webhooks.schema_migrations;

-- name: record_migration
-- Record one applied migration, in the transaction that applied it.
insert into webhooks.schema_migrations (version, name, checksum)
values (%(version)s, %(name)s, %(checksum)s);

-- name: migrate_lock
-- Serialise concurrent `webhooks migrate` runs on one database: a second waits here, then
-- finds nothing left to do. A session lock, since each migration has its own transaction.
select pg_advisory_lock(%(key)s);

-- name: migrate_unlock
-- Release the lock taken by migrate_lock.
select pg_advisory_unlock(%(key)s);
