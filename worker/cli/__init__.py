"""The `webhooks` command line: every command takes --json; errors are one line on stderr.

Exit status: 0 success, 1 runtime failure, 2 usage error or bad setting.

One module per command group, over `worker.cli.common` (the App of a command, printing JSON
or a table, errors as one line) and `worker.cli.output` (tables and JSON).
"""

from __future__ import annotations

import click

from worker.cli import (
    apikey,
    bench,
    daemons,
    deliveries,
    dev,
    dlq,
    endpoint,
    event_types,
    migrate,
    portal,
    publish,
)
from worker.cli import status as state
from worker.cli.common import Cli, settings

__all__ = ["main", "settings"]


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="webhooks-outbox")
def main() -> None:
    """Deliver webhooks from a Postgres outbox, with retries, dead letters and replay."""


for command in (
    migrate.migrate,
    endpoint.endpoint,
    event_types.event_type,
    publish.publish,
    deliveries.deliveries,
    dlq.dlq,
    state.status,
    state.prune,
    state.check,
    dev.dev,
    daemons.api,
    apikey.api_key,
    portal.portal_link,
    daemons.relay,
    daemons.worker,
    bench.bench,
):
    main.add_command(command)
