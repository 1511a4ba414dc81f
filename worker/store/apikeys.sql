-- name: create_api_key
-- Store a new key: only its SHA-256, so reading the table gives no usable key.
insert into webhooks.api_keys (name, tenant_id, hash)
values (%(name)s, %(tenant)s, %(hash)s)
returning *;

-- name: list_api_keys
-- Every key, revoked ones included, oldest first.
select * from webhooks.api_keys order by id;

-- name: revoke_api_key
-- Revoke a key at once; revoking it again keeps the first time.
update webhooks.api_keys set revoked_at = coalesce(revoked_at, now())
where id = %(id)s
returning *;

-- name: live_api_key
-- The live key with this hash, if any (a revoked key authenticates nothing).
select * from webhooks.api_keys where hash = %(hash)s and revoked_at is null;

-- name: touch_api_key
-- Record a key's use (the caller writes it at most once a minute per key, so a busy client
-- does not rewrite the row on every request).
update webhooks.api_keys set last_used_at = now() where id = %(id)s;
