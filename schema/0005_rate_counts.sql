-- Per-endpoint rate limits counted in Postgres, for deployments whose broker is RabbitMQ and
-- that run no Redis (with a Redis broker the counts stay in Redis). One row per endpoint and
-- second; unlogged: the counts are soft state (losing them in a crash loosens a limit for a
-- second) and need no WAL.
create unlogged table webhooks.rate_counts (
    endpoint_id uuid   not null,
    second      bigint not null,
    count       integer not null,
    primary key (endpoint_id, second)
);
