"""Run the whole benchmark, stopping everything it started whatever happens."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from worker.bench.measure import Bench
from worker.bench.options import Options


def run(opts: Options, say: Callable[[str], None]) -> dict[str, Any]:
    """Run the whole benchmark and return its results; everything started is stopped."""
    bench = Bench(opts, say)
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through `close` like Ctrl-C

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminate)
    try:
        say("setting up: database, Redis, receiver, endpoints")
        bench.setup()
        assert bench.services is not None
        say(f"  services: {bench.services.source}; Redis database {bench.redis_db}")
        say("publish")
        bench.measure_publish()
        say("relay alone")
        bench.measure_relay()
        concurrency = "default" if opts.concurrency is None else opts.concurrency
        say(
            f"pipeline: {opts.processes} worker processes x {opts.threads} threads,"
            f" concurrency {concurrency}, receiver delay {opts.receiver_delay * 1000:g} ms,"
            " alternating with the ceiling"
        )
        bench.measure_pipeline()
        return bench.finish()
    except BaseException:
        bench.failed = True
        raise
    finally:
        main = threading.current_thread() is threading.main_thread()
        if main:  # a second Ctrl-C must not leave processes or the database behind
            interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            bench.close()
        finally:
            if main:
                signal.signal(signal.SIGINT, interrupt)
                signal.signal(signal.SIGTERM, previous)
