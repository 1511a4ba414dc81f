"""`webhooks dev`: the whole pipeline on this machine, for development (see `worker.dev`)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click

from worker.cli.common import settings


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where embedded data and logs go, kept afterwards (default: a temporary directory "
    "removed at the end).",
)
def dev(workdir: Path | None) -> None:
    """Run the whole pipeline with a demo receiver and sample events, until Ctrl-C.

    With no DATABASE_URL an embedded Postgres is started, with no REDIS_URL an embedded
    Redis: for development only.
    """
    from worker import dev as devmode

    settings()  # a malformed setting stops here, in one line, before anything starts
    if workdir is not None:
        devmode.run(workdir)
        click.echo(f"kept {workdir} (embedded data and pipeline.log)")
        return
    temporary = Path(tempfile.mkdtemp(prefix="webhooks-dev-"))
    try:
        devmode.run(temporary)
    finally:
        # The embedded servers are stopped by now; their data goes with the demo.
        shutil.rmtree(temporary, ignore_errors=True)
