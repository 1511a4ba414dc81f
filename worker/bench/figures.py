"""Pure arithmetic of the figures: medians, percentiles, CPU per delivery, the targets."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from worker.bench.options import CEILING_SECONDS, CPU_ROLES, Options


def median(values: Sequence[float]) -> float:
    """Return the median of a non-empty sequence."""
    return float(statistics.median(values))


def percentile(ordered: Sequence[float], p: float) -> float:
    """Return the nearest-rank percentile `p` (0-100) of sorted values."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return float(ordered[rank - 1])


def figure(runs: Sequence[float]) -> dict[str, Any]:
    """Summarise the runs of one figure: median, min, max and every run."""
    return {
        "median": round(median(runs), 1),
        "min": round(min(runs), 1),
        "max": round(max(runs), 1),
        "runs": [round(r, 1) for r in runs],
    }


def ceiling_requests(total: int, processes: int, threads: int, delay: float) -> int:
    """Return how many of `total` requests a ceiling run sends.

    All of them with no receiver delay; with one, at most CEILING_SECONDS' worth for
    `processes` x `threads` clients that each wait `delay` per request.
    """
    if delay <= 0:
        return total
    per_thread = max(1, math.ceil(CEILING_SECONDS / delay))
    return min(total, processes * threads * per_thread)


def cpu_ms_per_delivery(
    cores: dict[str, float], seconds: float, deliveries: int
) -> dict[str, float]:
    """Return the CPU milliseconds each role spent per delivery over a phase of `seconds`.

    `cores` is CpuMeter's unrounded cores by role. ``worker`` and ``worker-main`` are summed
    as ``workers``: the Dramatiq parent and its children are one deployment unit. ``bench``
    is the publisher. Processes outside the bench (``other``) are left out: they are not the
    pipeline's cost, and the CPU rows of the report show them.
    """
    per = dict.fromkeys(CPU_ROLES, 0.0)
    for role, used in cores.items():
        name = "workers" if role.startswith("worker") else role
        if name in per:
            per[name] += used * seconds * 1000 / max(1, deliveries)
    return {role: round(ms, 3) for role, ms in per.items()}


def worker_args(opts: Options) -> list[str]:
    """Return the arguments of the `webhooks worker` command the bench starts."""
    args = ["worker", "--processes", str(opts.processes), "--threads", str(opts.threads)]
    if opts.concurrency is not None:  # else the worker's own default, as an operator gets it
        args += ["--concurrency", str(opts.concurrency)]
    return args


def envelope_bytes(event_type: str, payload_json: str) -> bytes:
    """Return a Standard Webhooks body like the workers send."""
    stamp = "2024-01-01T00:00:00Z"
    return f'{{"type":"{event_type}","timestamp":"{stamp}","data":{payload_json}}}'.encode()


def targets(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Compare the figures with the targets set for a 2-core machine."""
    lat = res.get("latency_ms", {})
    rows: dict[str, tuple[Any, str, float]] = {}
    if res.get("options", {}).get("receiver_delay"):
        # A slow receiver: requests in flight set the rate, and the ceiling (threads that
        # block) is no ceiling; the target is the rate itself, on few connections.
        rows["end_to_end_per_s"] = (res.get("end_to_end_per_s", {}).get("median"), ">=", 1000)
        peak = res.get("worker_pg_connections", {}).get("peak", {}).get("max")
        rows["worker_pg_connections"] = (peak, "<=", 8)
    else:
        rows["pipeline_ratio"] = (res.get("pipeline_ratio"), ">=", 0.70)
    rows |= {
        "relay_per_s": (res.get("relay_per_s", {}).get("median"), ">=", 20_000),
        "publish_many_per_s": (res.get("publish_many_per_s", {}).get("median"), ">=", 50_000),
        "latency_p50_ms": (lat.get("p50"), "<=", 10.0),
        "latency_p99_ms": (lat.get("p99"), "<=", 50.0),
    }
    out = {}
    for name, (value, op, goal) in rows.items():
        met = value is not None and (value >= goal if op == ">=" else value <= goal)
        out[name] = {"value": value, "target": f"{op} {goal:g}", "met": met}
    return out
