"""Run the `webhooks` command line as ``python -m worker.cli``."""

from worker.cli import main

main()
