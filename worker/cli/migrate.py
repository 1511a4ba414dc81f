"""`webhooks migrate`: apply the schema migrations, or list them."""

from __future__ import annotations

import click

from worker.cli.common import connection, emit, json_option
from worker.cli.output import table
from worker.store import migrate as migrations
from worker.store.db import wrapped_errors


@click.command()
@click.option("--status", "show_status", is_flag=True, help="List applied and pending versions.")
@json_option
def migrate(show_status: bool, as_json: bool) -> None:
    """Apply pending schema migrations (or list them with --status)."""
    with connection() as conn, wrapped_errors():
        if show_status:
            rows = [
                {
                    "version": s.version,
                    "name": s.name,
                    "state": "changed" if s.changed else ("applied" if s.applied_at else "pending"),
                    "applied_at": s.applied_at,
                }
                for s in migrations.status(conn)
            ]
            emit(as_json, rows, lambda: table(rows, ["version", "name", "state", "applied_at"]))
            return
        done = migrations.migrate(conn)
        version = migrations.current_version(conn)
    names = [f"{m.version:04d}_{m.name}" for m in done]
    if done:
        lines = [f"applied {name}" for name in names] + [f"schema at version {version}"]
    else:
        lines = [f"nothing to do: schema at version {version}"]
    emit(as_json, {"applied": names, "version": version}, "\n".join(lines))
