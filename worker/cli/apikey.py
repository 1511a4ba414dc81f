"""`webhooks api-key`: the keys of the HTTP API."""

from __future__ import annotations

import click

from worker.cli.common import as_dict, connection, emit, json_option
from worker.cli.output import table


@click.group("api-key")
def api_key() -> None:
    """Make, list and revoke the keys of the HTTP API (`webhooks api`)."""


@api_key.command("create")
@click.option("--name", required=True, help="Who or what uses the key (shown in listings).")
@click.option("--tenant", default=None, help="The one tenant the key sees and touches.")
@click.option("--admin", is_flag=True, help="A key for every tenant.")
@json_option
def api_key_create(name: str, tenant: str | None, admin: bool, as_json: bool) -> None:
    """Make a key; it is printed once and stored only hashed."""
    from worker.ops import apikeys

    if admin == (tenant is not None):
        raise click.UsageError("choose exactly one of --tenant T and --admin")
    with connection() as conn:
        made, key = apikeys.create(conn, name, tenant_id=tenant)
    emit(as_json, {**as_dict(made), "key": key}, key)
    if not as_json:
        scope = "admin" if made.admin else "tenant " + str(made.tenant_id)
        click.echo(f"api key {made.id} ({scope}): shown only now, store it safely", err=True)


@api_key.command("list")
@json_option
def api_key_list(as_json: bool) -> None:
    """List every key (never the keys themselves), revoked ones included."""
    from worker.ops import apikeys

    with connection() as conn:
        keys = apikeys.list_keys(conn)
    rows = [{**as_dict(k), "scope": k.tenant_id or "admin"} for k in keys]
    columns = ["id", "name", "scope", "created_at", "last_used_at", "revoked_at"]
    emit(as_json, rows, lambda: table(rows, columns))


@api_key.command("revoke")
@click.argument("key_id", type=int)
@json_option
def api_key_revoke(key_id: int, as_json: bool) -> None:
    """Revoke a key: every request with it is refused from now on."""
    from worker.ops import apikeys

    with connection() as conn:
        gone = apikeys.revoke(conn, key_id)
    emit(as_json, gone, f"revoked api key {gone.id} ({gone.name})")
