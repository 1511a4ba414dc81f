"""A real HTTP receiver for tests: records every request, answers as each path is told.

The receiver itself is the product's (`worker.dev.receiver`, which `webhooks dev` uses too);
the answers below script what only the tests need.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from worker.dev.receiver import (
    Answer,
    Receiver,
    Request,
    fail_first,
    ok,
    running_receiver,
    status,
)

__all__ = [
    "Answer",
    "Receiver",
    "Request",
    "down_until",
    "fail_each_event_first",
    "fail_first",
    "hold_until",
    "ok",
    "running_receiver",
    "status",
]


def fail_each_event_first(receiver: Receiver, path: str, k: int) -> Callable[[int], Answer]:
    """Fail the first ``k`` requests of every event (by webhook-id) on ``path``, then 200."""

    def answer(n: int) -> Answer:
        with receiver.lock:
            on_path = [r for r in receiver.requests if r.path == path]
            event = on_path[n - 1].headers["webhook-id"]  # the n-th is this very request
            seen = sum(1 for r in on_path if r.headers["webhook-id"] == event)
        return (500, {}, b"not yet") if seen <= k else (200, {}, b"ok")

    return answer


def down_until(heal_at: Callable[[], float]) -> Callable[[int], Answer]:
    """Answer 500 until the time ``heal_at()`` returns, then 200."""
    return lambda _: (500, {}, b"down") if time.time() < heal_at() else (200, {}, b"ok")


def hold_until(released: threading.Event) -> Callable[[int], Answer]:
    """Hold each request open until ``released`` is set (a minute at most), then answer 200."""

    def answer(_: int) -> Answer:
        released.wait(60)
        return 200, {}, b"ok"

    return answer
