"""`publish_many` throughput through each publisher and driver, on this machine.

    python -m tests.publish_rates [--batch 1000] [--batches 10] [--repeats 5]

Creates a database of its own (on DATABASE_URL's server, else 127.0.0.1:5432), migrates it,
then runs ``--repeats`` rounds; in each, every publisher in turn runs ``--batches``
transactions, each one ``publish_many`` of ``--batch`` order events (~330 bytes of JSON with
nested objects and quotes) and a commit. Prints per publisher the median events per second,
the median of its per-round ratio to the bare psycopg publisher (the same round's: a busy
machine's load moves both) and the client CPU per event. The outbox is emptied before each
run. Django runs in a process of its own per backend and round (tests/django_site,
`publish_rate`). Drops the database at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[1]
EVENT_TYPE = "order.paid"


def order(seq: int) -> dict[str, Any]:
    """Return the payload of event ``seq``: an order, about 330 bytes of JSON."""
    return {
        "order": seq,
        "customer": {"id": f"cus_{seq:08d}", "name": 'Ada "The Countess" Lovelace', "vip": True},
        "items": [
            {"sku": "A-1", "qty": 2, "price": "12.50", "title": "Tea, Earl Grey's"},
            {"sku": "B-22", "qty": 1, "price": "3.99", "title": "Scone"},
        ],
        "currency": "EUR",
        "total": "28.99",
        "note": "Leave at the door; ring twice.",
    }


def events(batch: int, first: int) -> list[tuple[str, Any]]:
    return [(EVENT_TYPE, order(first + i)) for i in range(batch)]


#: One publisher: (name, a function that publishes one batch in one committed transaction).
Run = Callable[[list[tuple[str, Any]]], None]


def measure(
    name: str, publish_batch: Run, url: str, batch: int, batches: int, repeats: int
) -> dict[str, Any]:
    """Time ``repeats`` runs of ``batches`` batches; return the median rate and CPU."""
    rates, cpu = [], []
    publish_batch(events(batch, 0))  # warm up: connections, prepared statements, imports
    for _ in range(repeats):
        empty(url)
        work = [events(batch, b * batch) for b in range(batches)]
        started, cpu_started = time.perf_counter(), time.process_time()
        for one in work:
            publish_batch(one)
        elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu_started
        rates.append(batch * batches / elapsed)
        cpu.append(cpu_used / (batch * batches) * 1e6)
    return {"publisher": name, "rates": rates, "cpu_us": statistics.median(cpu)}


def empty(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("truncate webhooks.outbox cascade")


def bare_psycopg(url: str) -> Iterator[Run]:
    from producers import publish_many

    with psycopg.connect(url) as conn:

        def run(batch: list[tuple[str, Any]]) -> None:
            with conn.transaction():
                publish_many(conn, batch)

        yield run


def sqlalchemy_sync(url: str, driver: str) -> Iterator[Run]:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from producers.sqlalchemy import publish_many

    engine = create_engine(url.replace("postgresql://", f"postgresql+{driver}://", 1))
    with Session(engine) as session:

        def run(batch: list[tuple[str, Any]]) -> None:
            with session.begin():
                publish_many(session, batch)

        yield run
    engine.dispose()


def sqlalchemy_async(url: str, driver: str) -> Iterator[Run]:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from producers.sqlalchemy import apublish_many

    loop = asyncio.new_event_loop()
    engine = create_async_engine(url.replace("postgresql://", f"postgresql+{driver}://", 1))
    session = AsyncSession(engine)

    async def one(batch: list[tuple[str, Any]]) -> None:
        async with session.begin():
            await apublish_many(session, batch)

    yield lambda batch: loop.run_until_complete(one(batch))
    loop.run_until_complete(session.close())
    loop.run_until_complete(engine.dispose())
    loop.close()


def django(url: str, backend: dict[str, str], batch: int, batches: int, repeats: int) -> Any:
    """Run the test site's `publish_rate` command on one backend; return its figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOKS_", "DJANGO_"))}
    env.update(backend, WEBHOOKS_TEST_DJANGO_DB=url)
    args = ["--batch", str(batch), "--batches", str(batches), "--repeats", str(repeats)]
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests/django_site/manage.py"), "publish_rate", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@contextmanager
def database() -> Iterator[str]:
    """Create and migrate a database of the run's own; drop it at the end."""
    from worker.store import migrate

    admin = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    name = f"webhooks_rates_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate.migrate(conn)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


SQLALCHEMY = [
    ("SQLAlchemy + psycopg", sqlalchemy_sync, "psycopg"),
    ("SQLAlchemy + psycopg2", sqlalchemy_sync, "psycopg2"),
    ("SQLAlchemy async + asyncpg", sqlalchemy_async, "asyncpg"),
    ("SQLAlchemy async + psycopg", sqlalchemy_async, "psycopg"),
]
DJANGO = [
    ("Django + psycopg", {}),
    ("Django + psycopg, server-side binding", {"WEBHOOKS_TEST_DJANGO_BINDING": "server"}),
    ("Django + psycopg2", {"WEBHOOKS_TEST_DJANGO_DRIVER": "psycopg2"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    opts = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    with database() as url:
        opened = [("psycopg (bare)", bare_psycopg(url))]
        opened += [(name, make(url, driver)) for name, make, driver in SQLALCHEMY]
        runs = {name: next(publisher) for name, publisher in opened}
        results: dict[str, dict[str, list[float]]] = {}
        for _ in range(opts.repeats):
            for name, run in runs.items():
                got = measure(name, run, url, opts.batch, opts.batches, 1)
                add(results, name, got["rates"][0], got["cpu_us"])
            for name, backend in DJANGO:
                got = django(url, backend, opts.batch, opts.batches, 1)
                add(results, name, got["rates"][0], got["cpu_us"])
        for _, publisher in opened:
            next(publisher, None)
    reference = results["psycopg (bare)"]["rates"]
    for name, figures in results.items():
        ratios = [r / ref for r, ref in zip(figures["rates"], reference, strict=True)]
        print(line(name, figures["rates"], statistics.median(ratios), figures["cpu_us"]))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def add(results: dict[str, dict[str, list[float]]], name: str, rate: float, cpu: float) -> None:
    entry = results.setdefault(name, {"rates": [], "cpu_us": []})
    entry["rates"].append(rate)
    entry["cpu_us"].append(cpu)


def line(name: str, rates: list[float], ratio: float, cpu_us: list[float]) -> str:
    return (
        f"{name:<38} {statistics.median(rates):>7,.0f} events/s"
        f" ({min(rates):,.0f}-{max(rates):,.0f}), {ratio:.2f} of bare psycopg,"
        f" {statistics.median(cpu_us):.0f} us client CPU an event"
    )


if __name__ == "__main__":
    main()
