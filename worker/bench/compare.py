"""Run the benchmark on several brokers, alternating, and set the figures side by side.

`webhooks bench --broker-url redis --broker-url amqp://...` runs the whole benchmark once per
broker per round (``--repeats`` rounds, one run each, the brokers in turn, so a machine that
gets busier or quieter during the run weighs on every broker alike), notes the load average
before and after every run, and reports each broker's median with the ratio to the first.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from worker.bench.figures import median
from worker.bench.main import run
from worker.bench.options import Options

#: The figures set side by side: (label, unit, path into a run's results; larger is better).
FIGURES: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("relay alone", "deliveries/s", ("relay_per_s", "median"), True),
    ("end to end", "deliveries/s", ("end_to_end_per_s", "median"), True),
    ("publish_many", "events/s", ("publish_many_per_s", "median"), True),
    ("worker CPU per delivery", "ms", ("cpu_ms_per_delivery", "workers"), False),
    ("relay CPU per delivery", "ms", ("cpu_ms_per_delivery", "relay"), False),
    ("Redis CPU per delivery", "ms", ("cpu_ms_per_delivery", "redis"), False),
    ("RabbitMQ CPU per delivery", "ms", ("cpu_ms_per_delivery", "rabbitmq"), False),
    ("latency p50", "ms", ("latency_ms", "p50"), False),
    ("latency p99", "ms", ("latency_ms", "p99"), False),
)


def _pick(result: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return float(value)


def compare(opts: Options, brokers: list[str | None], say: Callable[[str], None]) -> dict[str, Any]:
    """Run the benchmark once per broker per round; return every run and the side by side.

    ``brokers`` are broker URLs, None for the bench's own Redis.
    """
    rounds = opts.repeats
    names: list[str] = []
    runs: dict[str, list[dict[str, Any]]] = {}
    loads: dict[str, list[dict[str, list[float]]]] = {}
    for r in range(rounds):
        for url in brokers:
            one = dataclasses.replace(opts, broker_url=url, repeats=1)
            before = [round(x, 2) for x in os.getloadavg()]
            say(f"round {r + 1} of {rounds}: {url or 'redis (the bench own database)'}")
            result = run(one, say)
            after = [round(x, 2) for x in os.getloadavg()]
            name = str(result["machine"]["broker"])
            if r == 0:
                names.append(name)
            runs.setdefault(name, []).append(result)
            loads.setdefault(name, []).append({"before": before, "after": after})
    side: list[dict[str, Any]] = []
    for label, unit, path, larger_better in FIGURES:
        row: dict[str, Any] = {"figure": label, "unit": unit, "larger_is_better": larger_better}
        for name in names:
            values = [v for res in runs[name] if (v := _pick(res, path)) is not None]
            row[name] = median(values) if values else None
        first = row[names[0]]
        row["ratio_to_first"] = {
            name: (round(row[name] / first, 2) if row[name] and first else None)
            for name in names[1:]
        }
        side.append(row)
    return {
        "brokers": names,
        "rounds": rounds,
        "load_average": loads,
        "side_by_side": side,
        "runs": runs,
        "correctness": {"ok": all(res["correctness"]["ok"] for rs in runs.values() for res in rs)},
    }


def render_comparison(res: dict[str, Any]) -> str:
    """Return the side-by-side table, each run's load, and each run's verdict."""
    names: list[str] = res["brokers"]
    first_run = res["runs"][names[0]][0]
    m, o = first_run["machine"], first_run["options"]
    width = max(14, *(len(n) + 2 for n in names))
    lines = [
        f"webhooks bench, brokers side by side: {m['cpus']} CPUs ({m['cpu_model']}),"
        f" Python {m['python']}, PostgreSQL {m['postgres']}, Redis {m['redis']}",
        f"  {o['events']:,} events x {o['endpoints']} endpoints; receiver delay"
        f" {o.get('receiver_delay', 0.0) * 1000:g} ms; {res['rounds']} round(s), one run per"
        " broker per round, brokers alternating; medians over rounds",
        "",
        f"{'figure':<34}" + "".join(f"{n:>{width}}" for n in names) + "   ratio to " + names[0],
    ]
    for row in res["side_by_side"]:
        cells = ""
        for n in names:
            v = row[n]
            cells += f"{'-' if v is None else format(v, ',.0f' if v >= 100 else ',.3f'):>{width}}"
        ratios = ", ".join(
            f"{n} {'-' if r is None else format(r, '.2f')}"
            for n, r in row["ratio_to_first"].items()
        )
        lines.append(f"{row['figure'] + ' (' + row['unit'] + ')':<34}{cells}   {ratios}")
    lines += ["", "load average (1, 5, 15 min) before -> after each run"]
    for n in names:
        for i, load in enumerate(res["load_average"][n]):
            lines.append(f"  {n:<16} round {i + 1}: {load['before']} -> {load['after']}")
    lines.append("")
    for n in names:
        for i, run_result in enumerate(res["runs"][n]):
            c = run_result["correctness"]
            lines.append(
                f"correctness {n:<16} round {i + 1}: {'ok' if c['ok'] else 'FAILED'},"
                f" {c['lost']} lost"
            )
    return "\n".join(lines)
