"""`webhooks dev`: the whole pipeline on this machine, for development (see `worker.dev`)."""

from __future__ import annotations

import atexit
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
@click.option(
    "--use-configured",
    is_flag=True,
    help="Run the demo on DATABASE_URL and REDIS_URL instead of embedded servers: it adds "
    "its endpoints and events there and its worker delivers whatever is pending there.",
)
def dev(workdir: Path | None, use_configured: bool) -> None:
    """Run the whole pipeline with a demo receiver and sample events, until Ctrl-C.

    The demo starts an embedded Postgres and an embedded Redis of its own and never touches
    the configured DATABASE_URL, REDIS_URL or WEBHOOKS_BROKER_URL unless --use-configured
    is given. For development only.
    """
    from worker import dev as devmode

    settings()  # a malformed setting stops here, in one line, before anything starts
    if workdir is not None:
        devmode.run(workdir, use_configured=use_configured)
        click.echo(f"kept {workdir} (embedded data and pipeline.log)")
        return
    temporary = Path(tempfile.mkdtemp(prefix="webhooks-dev-"))
    # Registered before the embedded Postgres is imported, so it runs after pgserver's own
    # exit handler, which takes a lock file in there again (atexit runs last-in first-out).
    atexit.register(shutil.rmtree, temporary, ignore_errors=True)
    try:
        devmode.run(temporary, use_configured=use_configured)
    finally:
        # The embedded servers are stopped by now; their data goes with the demo.
        shutil.rmtree(temporary, ignore_errors=True)
