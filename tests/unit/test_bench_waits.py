"""The bench's pure pieces: it waits on progress, not on a fixed clock (a fake receiver and
queue), counts requests in flight exactly, and turns CPU and samples into its figures."""

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


def test_in_flight_reports_the_peak_and_the_time_weighted_mean() -> None:
    flight = bench.InFlight(now=0.0)
    flight.received(0.0)  # one request held for 4 s
    flight.received(1.0)  # a second one held for 1 s
    flight.answered(2.0)
    flight.answered(4.0)
    # (1 x 1 s + 2 x 1 s + 1 x 2 s + 0 x 6 s) / 10 s
    assert flight.summary(10.0) == {"in_flight_peak": 2, "in_flight_mean": 0.5}


def test_in_flight_carries_waiting_requests_into_a_new_window() -> None:
    flight = bench.InFlight(now=0.0)
    for _ in range(3):
        flight.received(0.0)
    flight.answered(1.0)
    flight.restart(5.0)  # two still waiting: they count from the window's start
    flight.answered(6.0)
    flight.answered(7.0)
    assert flight.summary(9.0) == {"in_flight_peak": 2, "in_flight_mean": 0.75}


def test_an_instant_answer_is_never_more_than_one_in_flight() -> None:
    flight = bench.InFlight(now=0.0)
    for t in (1.0, 2.0, 3.0):
        flight.received(t)
        flight.answered(t)
    assert flight.summary(4.0) == {"in_flight_peak": 1, "in_flight_mean": 0.0}


def test_the_worker_role_sums_the_dramatiq_parent_and_its_children() -> None:
    cores = {"worker": 0.5, "worker-main": 0.1, "postgres": 0.2, "bench": 0.05, "other": 0.9}
    per = bench.cpu_ms_per_delivery(cores, seconds=10.0, deliveries=1000)
    # 0.6 cores x 10 s = 6000 ms over 1000 deliveries; processes outside the bench are left out.
    assert per == {
        "workers": 6.0,
        "postgres": 2.0,
        "redis": 0.0,
        "rabbitmq": 0.0,
        "relay": 0.0,
        "receiver": 0.0,
        "bench": 0.5,
    }


@pytest.mark.parametrize(
    ("total", "processes", "threads", "delay", "sent"),
    [
        (40_000, 2, 8, 0.0, 40_000),  # no delay: everything, as fast as it goes
        (40_000, 2, 8, 0.1, 2 * 8 * 50),  # 100 ms: about CEILING_SECONDS' worth
        (40_000, 2, 32, 0.1, 2 * 32 * 50),
        (400, 1, 8, 0.02, 400),  # fewer than that: all of them
        (40_000, 1, 1, 30.0, 1),  # a delay beyond CEILING_SECONDS: one each
    ],
)
def test_a_slow_receiver_bounds_the_ceilings_requests(
    total: int, processes: int, threads: int, delay: float, sent: int
) -> None:
    assert bench.ceiling_requests(total, processes, threads, delay) == sent


def test_the_workers_get_concurrency_only_when_it_is_asked_for() -> None:
    assert bench.worker_args(bench.Options(processes=2, threads=4)) == [
        *("worker", "--processes", "2", "--threads", "4"),
    ]
    assert bench.worker_args(bench.Options(concurrency=64))[-2:] == ["--concurrency", "64"]


def test_a_sampler_keeps_every_sample_and_skips_the_lost_ones() -> None:
    values = iter([3.0, None, 5.0, 4.0])
    seen = threading.Event()

    def probe() -> float | None:
        value = next(values, 4.0)
        if value == 4.0:
            seen.set()
        return value

    with bench.Sampler(probe, interval=0.001) as sampler:
        assert seen.wait(10)
    assert sampler.values[:3] == [3.0, 5.0, 4.0]
    assert sampler.summary()["peak"] == 5.0
    assert bench.Sampler(probe).summary() == {"peak": 0.0, "mean": 0.0}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"receiver_delay": -0.1}, "--receiver-delay"),
        ({"receiver_delay": 60.0}, "--receiver-delay"),
        ({"concurrency": 0}, "--concurrency"),
    ],
)
def test_bad_receiver_delays_and_concurrencies_are_refused(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(bench.BenchError, match=message):
        bench.Options(**change).check()


def test_targets_judge_a_fast_receiver_by_ratio_and_a_slow_one_by_rate() -> None:
    fig = {"median": 1500.0, "min": 1400.0, "max": 1600.0, "runs": [1500.0]}
    common = {"relay_per_s": fig, "publish_many_per_s": fig, "latency_ms": {"p50": 4, "p99": 60}}
    fast = bench.targets({**common, "options": {"receiver_delay": 0.0}, "pipeline_ratio": 0.8})
    assert fast["pipeline_ratio"]["met"] and "end_to_end_per_s" not in fast
    assert not fast["latency_p99_ms"]["met"]  # 60 ms is over the 50 ms target
    slow = bench.targets(
        {
            **common,
            "options": {"receiver_delay": 0.1},
            "end_to_end_per_s": fig,
            "worker_pg_connections": {"peak": {"median": 9.0, "max": 9.0}},
        }
    )
    assert "pipeline_ratio" not in slow
    assert slow["end_to_end_per_s"]["met"] and not slow["worker_pg_connections"]["met"]


def test_the_bench_counts_requests_that_overtook_the_event_before_them_in_their_key() -> None:
    from worker.bench.steps import order_violations

    # Two keys: events a, c are key 0; b, d key 1 (event j has key j % 2).
    events = ["a", "b", "c", "d"]
    path = b"/e/0"
    in_order = (
        [0.0, 0.1, 0.2, 0.3, 0.4],
        [path] * 5,
        [b"a", b"b", b"c", b"a", b"d"],
        [200, 500, 200, 200, 200],
    )
    # b's only answer is a 500 at 0.1, so d (its successor) at 0.4 overtook it; a was
    # answered 2xx at 0.0, before c arrived.
    assert order_violations(events, 2, in_order) == 1
    fixed = (in_order[0], in_order[1], in_order[2], [200, 200, 200, 200, 200])
    assert order_violations(events, 2, fixed) == 0
    # The same event ids to another endpoint are checked against that endpoint's answers.
    other = ([0.0, 0.1], [path, b"/e/1"], [b"a", b"c"], [200, 200])
    assert order_violations(["a", "b", "c"], 2, other) == 1
