"""``manage.py webhooks_migrate``: apply the webhooks schema migrations to a Django database.

The same migrations, lock and checks as ``webhooks migrate`` (`worker.store.migrate`),
applied through a psycopg 3 connection of the command's own (autocommit, each migration in
its own transaction) made from the database's Django settings, whichever driver Django uses.

A management command is an entry point: Django imports it only to run it, never when the
application imports `producers.django`, so reaching the worker's migration code from here
keeps the publisher itself as light as `producers` (tests/unit/test_layers.py places it).
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg import pq

from producers.errors import WebhooksError
from worker.store import migrate


class Command(BaseCommand):
    help = "Apply the webhooks schema migrations (as `webhooks migrate`), or list them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help='The database alias to migrate (default: "default").',
        )
        parser.add_argument(
            "--status", action="store_true", help="List applied and pending versions."
        )

    def handle(self, *args: Any, database: str, status: bool, **options: Any) -> None:
        params = conninfo_params(connections[database].get_connection_params())
        try:
            with psycopg.connect(**params, autocommit=True) as conn:
                if status:
                    for s in migrate.status(conn):
                        state = "changed" if s.changed else "applied" if s.applied_at else "pending"
                        self.stdout.write(f"{s.version:04d}_{s.name}  {state}")
                    return
                done = migrate.migrate(conn)
                version = migrate.current_version(conn)
        except (psycopg.Error, WebhooksError) as exc:
            raise CommandError(str(exc).strip()) from exc
        for m in done:
            self.stdout.write(f"applied {m.version:04d}_{m.name}")
        what = "schema at version" if done else "nothing to do: schema at version"
        self.stdout.write(f"{what} {version}")


def conninfo_params(params: dict[str, Any]) -> dict[str, Any]:
    """Keep the libpq connection parameters of a Django backend's connection parameters.

    Django adds driver objects (its cursor class, psycopg 3's adapters) that a connection of
    our own must not take.
    """
    known = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
    return {key: value for key, value in params.items() if key in known}
