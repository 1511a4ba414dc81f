"""One retry mechanism: transient errors only, jittered backoff, each outage logged once."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from worker.outages import Outage, retrying, retrying_for


def run_for(outage: Outage, patience: float, failures: list[BaseException]) -> int:
    """Run a try that raises ``failures`` in turn, then returns; return how many tries."""
    tries = 0

    async def main() -> None:
        nonlocal tries
        async for attempt in retrying_for(outage, patience):
            with attempt:
                tries += 1
                if failures:
                    raise failures.pop(0)

    asyncio.run(main())
    return tries


def test_the_engine_retries_a_transient_error_and_logs_the_outage_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage("Postgres")
    with caplog.at_level(logging.WARNING, "webhooks"):
        tries = run_for(outage, 5.0, [ConnectionError("down"), ConnectionError("still down")])
        outage.recovered()
    assert tries == 3
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2
    assert logged[0] == "Postgres unavailable, retrying with backoff: down"
    assert logged[1].startswith("Postgres available again after")


def test_the_engine_gives_up_rather_than_wait_past_its_patience() -> None:
    with pytest.raises(ConnectionError):
        run_for(Outage("Postgres"), 0.1, [ConnectionError("down")] * 10)


def test_an_error_that_is_not_transient_is_raised_at_once() -> None:
    failures: list[BaseException] = [ValueError("a bug")]
    with pytest.raises(ValueError):
        run_for(Outage("Postgres"), 5.0, failures)


def test_a_daemon_retries_until_it_is_stopped() -> None:
    stopping = threading.Event()
    tries = 0

    def work() -> None:
        nonlocal tries
        tries += 1
        if tries == 3:
            stopping.set()
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        retrying(Outage("Redis"), stopping=stopping)(work)
    assert tries == 3
