"""`webhooks bench --broker-url A --broker-url B`: brokers alternate, figures side by side."""

from __future__ import annotations

from typing import Any

import pytest

from worker.bench import compare as side
from worker.bench.options import Options


def _result(broker: str, relay: float, e2e: float) -> dict[str, Any]:
    return {
        "machine": {
            "broker": broker,
            "cpus": 2,
            "cpu_model": "x",
            "python": "3.11",
            "postgres": "15",
            "redis": "7",
        },
        "options": {"events": 10, "endpoints": 1, "receiver_delay": 0.1},
        "relay_per_s": {"median": relay},
        "end_to_end_per_s": {"median": e2e},
        "cpu_ms_per_delivery": {"workers": 0.5},
        "latency_ms": {"p50": 3.0, "p99": 9.0},
        "correctness": {"ok": True, "lost": 0},
    }


def test_the_brokers_alternate_each_round_and_each_figure_gets_its_ratio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str | None, int]] = []
    rates = iter([(10_000.0, 1_000.0), (5_000.0, 900.0), (12_000.0, 1_100.0), (7_000.0, 1_000.0)])

    def fake_run(opts: Options, say: Any) -> dict[str, Any]:
        calls.append((opts.broker_url, opts.repeats))
        relay, e2e = next(rates)
        return _result("rabbitmq" if opts.broker_url else "redis", relay, e2e)

    monkeypatch.setattr(side, "run", fake_run)
    res = side.compare(Options(repeats=2), [None, "amqp://mq/v"], say=lambda _: None)
    assert calls == [(None, 1), ("amqp://mq/v", 1), (None, 1), ("amqp://mq/v", 1)]
    assert res["brokers"] == ["redis", "rabbitmq"]
    rows = {row["figure"]: row for row in res["side_by_side"]}
    assert rows["relay alone"]["redis"] == 11_000 and rows["relay alone"]["rabbitmq"] == 6_000
    assert rows["end to end"]["ratio_to_first"] == {"rabbitmq": 0.9}  # 950 / 1,050
    assert len(res["load_average"]["rabbitmq"]) == 2 and res["correctness"]["ok"]
    report = side.render_comparison(res)
    assert "ratio to redis" in report and "load average" in report
