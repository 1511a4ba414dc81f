"""Run Dramatiq's worker command with the product's log format on every line.

Dramatiq's own CLI configures logging with its format in the main process and in each child
(`logging.basicConfig`). `webhooks worker` runs this module instead: it sets the product's
format (text or JSON, `worker.observe.logs`) on the root logger and starts Dramatiq's CLI with
``--skip-logging``, so the children inherit that handler; each worker process and the
metrics process configure it again on the pipe Dramatiq gives them for their output.
"""

from __future__ import annotations

import sys

from dramatiq import cli as dramatiq_cli

from worker.observe import logs, processes
from worker.settings import Settings


def main(argv: list[str] | None = None) -> int:
    """Run Dramatiq's worker command line (its arguments) and return its exit status."""
    settings = Settings.from_env()
    logs.configure(settings.log_format, settings.log_level)
    args = dramatiq_cli.make_argument_parser().parse_args(argv)  # type: ignore[no-untyped-call]
    args.skip_logging = True
    try:
        status: int = dramatiq_cli.main(args)  # type: ignore[no-untyped-call]
    finally:
        # The metrics process clears its files when it stops, but Dramatiq kills it when it
        # is slow to (a worker stopped during an outage): this process outlives them all.
        if settings.metrics_multiproc_dir:
            processes.clear_multiproc_dir(settings.metrics_multiproc_dir)
    return status


if __name__ == "__main__":
    sys.exit(main())
