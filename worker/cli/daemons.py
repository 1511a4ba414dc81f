"""The long-running commands: `webhooks relay`, `webhooks worker` and `webhooks api`.

Each checks the settings and the schema first, so a mistake is one line before anything
starts. The relay is built by the command's `worker.app.App`; the workers and the API build
theirs, in processes of their own, from the same settings.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from worker.cli.common import (
    DURATION,
    app,
    json_option,
    require_broker,
    require_schema,
    settings,
)
from worker.errors import ConfigError
from worker.observe import logs
from worker.settings import Settings, format_duration

log = logging.getLogger("webhooks")


@click.command()
@click.option(
    "--batch-size",
    default=Settings.relay_batch_size,
    show_default=True,
    type=click.IntRange(1, 100_000),
)
@click.option(
    "--lease",
    type=DURATION,
    default=format_duration(Settings.relay_lease),
    show_default=True,
    help="How long a queued delivery is left to its message before the scheduler checks on it.",
)
@json_option
def relay(batch_size: int, lease: float, as_json: bool) -> None:
    """Run the outbox relay and retry scheduler until SIGTERM or Ctrl-C.

    Serves /metrics, /healthz and /readyz on WEBHOOKS_RELAY_METRICS_PORT.
    """
    from worker.observe.health import start_relay_endpoint

    conf = settings()
    require_schema()
    require_broker()
    logs.configure("json" if as_json else conf.log_format, conf.log_level)
    daemon = app().relay(batch_size=batch_size, lease=lease)
    endpoint = start_relay_endpoint(conf, daemon.stats)
    daemon.install_signal_handlers()
    try:
        daemon.run()
    finally:
        endpoint.close()


@click.command()
@click.option(
    "--processes",
    "-p",
    default=os.cpu_count() or 1,
    type=click.IntRange(1, 256),
    show_default="CPU count",
)
@click.option(
    "--threads",
    "-t",
    default=Settings.worker_threads,
    show_default=True,
    type=click.IntRange(1, 256),
)
@click.option(
    "--concurrency",
    "-c",
    default=Settings.worker_concurrency,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Requests in flight per process (size it as rate x receiver latency).",
)
@json_option
def worker(processes: int, threads: int, concurrency: int, as_json: bool) -> None:
    """Run Dramatiq worker processes that deliver webhooks.

    Each process holds up to --concurrency requests in flight on one event loop, whatever
    --threads is (Dramatiq's threads only hand messages over). Serves /metrics, /healthz and
    /readyz on WEBHOOKS_METRICS_PORT from a process of its own that sums the metrics of every
    worker process.
    """
    from worker.engine import actors
    from worker.observe import health, metrics

    conf = settings()
    require_schema()  # fail here, in one line, not in every child process
    require_broker()
    health.ensure_port_free(conf.metrics_port, "WEBHOOKS_METRICS_PORT")
    # The children read their settings from this environment (worker.settings).
    env = dict(os.environ)
    # prometheus_client's multiprocess mode: each worker process writes its own files there,
    # the endpoint process sums them. Emptied first, so no earlier run's counts are added.
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics.prepare_multiproc_dir(conf.metrics_multiproc_dir)
    env["WEBHOOKS_WORKER_CONCURRENCY"] = str(concurrency)
    # Dramatiq's own variables: an operator's value is kept.
    env.setdefault("dramatiq_queue_prefetch", str(actors.queue_prefetch(threads, concurrency)))
    if as_json:
        env["WEBHOOKS_LOG_FORMAT"] = "json"
    # Idle consumers poll Redis with a backoff capped at this many ms (Dramatiq's default
    # of 1000 would add up to a second of latency at low load).
    env.setdefault("dramatiq_worker_timeout", "100")
    argv = [
        sys.executable,
        # -P: the working directory is not put on sys.path, so a `worker` folder there (a
        # project's own, another checkout's) is not imported in place of this package.
        "-P",
        "-m",
        "worker.engine.launcher",  # Dramatiq's CLI, logging in the product's format
        "worker.engine.actors:setup",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        conf.queue_name,
        "--fork-function",
        "worker.observe.health:serve_workers",
    ]
    os.execve(sys.executable, argv, env)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@json_option
def api(host: str, port: int, as_json: bool) -> None:
    """Serve the management HTTP API (see /docs) until SIGTERM or Ctrl-C.

    Needs the `api` extra (FastAPI, uvicorn). /healthz and /readyz answer probes.
    """
    conf = settings()
    conf.require_database_url()
    # Unlike the relay's and the workers', an API with no database answers nothing: each
    # request would wait for a connection and fail. Say so now, in one line.
    require_schema(reachable=True)
    try:
        from worker.api.server import listen, serve
    except ImportError as exc:
        raise ConfigError(
            "webhooks api",
            f"needs the api extra: install the package with [api], e.g. pip install '.[api]'"
            f" in a checkout ({exc})",
        ) from None
    sockets = listen(host, port)  # a port already taken is one line, before "serving"
    logs.configure("json" if as_json else conf.log_format, conf.log_level)
    log.info("serving the HTTP API on http://%s:%d", host, port)
    serve(conf, sockets)
