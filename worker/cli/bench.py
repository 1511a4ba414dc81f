"""`webhooks bench`: the end-to-end benchmark on this machine (see `worker.bench`)."""

from __future__ import annotations

import dataclasses
import sys

import click

from worker.cli.common import DURATION, emit, json_option, settings
from worker.cli.filtering import filter_value


@click.command()
@click.option("--events", default=20_000, show_default=True, type=click.IntRange(min=1))
@click.option("--endpoints", default=2, show_default=True, type=click.IntRange(1, 1000))
@click.option("--processes", "-p", default=2, show_default=True, type=click.IntRange(1, 256))
@click.option("--threads", "-t", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--payload-bytes", default=256, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--fail-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="Share of requests the receiver answers with 500 (retried on a short schedule).",
)
@click.option(
    "--rate",
    default=100.0,
    show_default=True,
    type=click.FloatRange(min=0.0, min_open=True),
    help="Events per second offered in the latency phase (open loop).",
)
@click.option(
    "--duration",
    "duration_seconds",
    type=DURATION,
    default="10s",
    show_default=True,
    help="Length of the latency phase.",
)
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option(
    "--backlog",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Also time the relay draining this many events published before it starts.",
)
@click.option(
    "--single-events",
    default=2000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Events published one per transaction for the `publish` figure.",
)
@click.option(
    "--redis-db",
    default=None,
    type=click.IntRange(min=0),
    help="Redis database number for the bench's queue, which must be empty: the bench "
    "flushes it at the end (default: the first empty one of 15..1).",
)
@click.option(
    "--broker-url",
    "broker_urls",
    multiple=True,
    help="Run the relay and workers on this RabbitMQ (amqp://...; its `webhooks` queue is"
    " emptied), or `redis` for the bench's own Redis database (the default). Given twice or"
    " more, the whole benchmark runs on each broker in turn, --repeats rounds, and the"
    " report sets them side by side with the load average of every run.",
)
@click.option(
    "--receiver-delay",
    type=DURATION,
    default="0s",
    show_default=True,
    help="How long the receiver waits before answering each request (e.g. 100ms).",
)
@click.option(
    "--concurrency",
    default=None,
    type=click.IntRange(1, 10_000),
    help="Passed to `webhooks worker --concurrency` (default: the worker's own).",
)
@click.option(
    "--filter",
    "filter_text",
    default=None,
    help="Put this payload filter (JSON or @FILE) on every endpoint; every event must pass it.",
)
@click.option(
    "--ordering-keys",
    default=None,
    type=click.IntRange(min=1),
    help="Make every endpoint ordered and spread the events over this many ordering keys;"
    " the receiver checks the order.",
)
@json_option
def bench(
    events: int,
    endpoints: int,
    processes: int,
    threads: int,
    payload_bytes: int,
    fail_rate: float,
    rate: float,
    duration_seconds: float,
    repeats: int,
    backlog: int,
    single_events: int,
    redis_db: int | None,
    broker_urls: tuple[str, ...],
    receiver_delay: float,
    concurrency: int | None,
    filter_text: str | None,
    ordering_keys: int | None,
    as_json: bool,
) -> None:
    """Benchmark publish, relay, workers and latency on this machine; print a report.

    Creates its own database (on DATABASE_URL's server, else a local or an embedded
    Postgres) and uses its own Redis database; removes both and stops every process it
    started when it ends, also on Ctrl-C. Exit status 1 if any delivery was lost.
    """
    from worker import bench as benchmark

    conf = settings()
    brokers = [None if url == "redis" else url for url in broker_urls] or [None]
    opts = benchmark.Options(
        events=events,
        endpoints=endpoints,
        processes=processes,
        threads=threads,
        payload_bytes=payload_bytes,
        fail_rate=fail_rate,
        rate=rate,
        duration=duration_seconds,
        repeats=repeats,
        backlog=backlog,
        single_events=single_events,
        database_url=conf.database_url,
        redis_url=conf.redis_url if "REDIS_URL" in conf.given else None,
        redis_db=redis_db,
        broker_url=brokers[0],
        rabbitmq_queue_type=conf.rabbitmq_queue_type,
        secret_key=conf.secret_key,
        receiver_delay=receiver_delay,
        concurrency=concurrency,
        filter=filter_value(filter_text) if filter_text is not None else None,
        ordering_keys=ordering_keys,
    )
    try:
        for url in brokers:  # values click cannot range-check: a usage error, status 2
            dataclasses.replace(opts, broker_url=url).check()
    except benchmark.BenchError as exc:
        raise click.UsageError(str(exc)) from None
    if len(brokers) > 1:
        from worker.bench.compare import compare, render_comparison

        both = compare(opts, brokers, say=lambda line: click.echo(line, err=True))
        emit(as_json, both, lambda: render_comparison(both))
        if not both["correctness"]["ok"]:
            sys.exit(1)
        return
    result = benchmark.run(opts, say=lambda line: click.echo(line, err=True))
    emit(as_json, result, lambda: benchmark.render(result))
    if not result["correctness"]["ok"]:
        sys.exit(1)
