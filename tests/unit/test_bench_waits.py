"""The bench waits on progress, not on a fixed clock (pure logic: a fake receiver and queue)."""

from __future__ import annotations

import queue
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from worker import bench

DONE = ("done", 0.0, 1.0, 5, 0)


def bench_counting(requests: list[int]) -> bench.Bench:
    """A Bench whose receiver reports the next count of `requests` on each look."""
    counts = iter(requests)
    last = [0]

    def summary() -> dict[str, Any]:
        last[0] = next(counts, last[0])
        return {"requests": last[0]}

    b = bench.Bench.__new__(bench.Bench)
    b.receiver = SimpleNamespace(summary=summary)  # type: ignore[assignment]
    return b


def test_a_ceiling_load_longer_than_the_stall_window_is_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench, "STALL_SECONDS", 0.5)
    out: queue.Queue[tuple[Any, ...]] = queue.Queue()
    timer = threading.Timer(3.5, out.put, args=(DONE,))
    timer.start()
    try:
        # The receiver keeps counting, so the load is working: wait however long it takes.
        assert bench_counting(list(range(1, 100)))._collect_load(out, 1) == [DONE]
    finally:
        timer.cancel()


def test_a_ceiling_load_that_stops_making_progress_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench, "STALL_SECONDS", 0.5)
    out: queue.Queue[tuple[Any, ...]] = queue.Queue()
    with pytest.raises(bench.BenchError, match="ceiling stalled: 7 requests received"):
        bench_counting([7])._collect_load(out, 1)
