"""Render the results as a readable report."""

from __future__ import annotations

from typing import Any

from worker.bench.options import PUBLISH_BATCH


def _rate(fig: dict[str, Any] | None, unit: str) -> str:
    if not fig:
        return "-"
    spread = f"[{fig['min']:,.0f} - {fig['max']:,.0f}]" if len(fig["runs"]) > 1 else ""
    return f"{fig['median']:>10,.0f} {unit:<14} {spread}"


def _short(fig: dict[str, Any] | None, fmt: str = ",.0f") -> str:
    if not fig:
        return "-"
    spread = f" [{fig['min']:{fmt}} - {fig['max']:{fmt}}]" if len(fig["runs"]) > 1 else ""
    return f"{fig['median']:{fmt}}{spread}"


def render(res: dict[str, Any]) -> str:
    """Return the results as a readable report."""
    lines = [
        *_heading(res),
        "",
        *_rates(res),
        *_observed(res),
        *_cpu(res),
        "",
        *_correctness(res),
        "",
        *_targets(res),
    ]
    return "\n".join(lines)


def _heading(res: dict[str, Any]) -> list[str]:
    m, o = res["machine"], res["options"]
    deliveries = o["events"] * o["endpoints"]
    concurrency = o.get("concurrency") or "default"
    delay_ms = o.get("receiver_delay", 0.0) * 1000
    return [
        f"webhooks bench: {m['cpus']} CPUs ({m['cpu_model']}), load {m['load_average']},"
        f" Python {m['python']}, PostgreSQL {m['postgres']}"
        f" (synchronous_commit={m['postgres_synchronous_commit']}), Redis {m['redis']},"
        f" broker {m.get('broker', 'redis')}",
        f"  {o['events']:,} events x {o['endpoints']} endpoints = {deliveries:,} deliveries;"
        f" workers {o['processes']} processes x {o['threads']} threads,"
        f" concurrency {concurrency}; receiver delay {delay_ms:g} ms;"
        f" payload {o['payload_bytes']} B; fail rate {o['fail_rate']:g};"
        f" median of {o['repeats']} [min - max]",
    ]


def _rates(res: dict[str, Any]) -> list[str]:
    lines = [
        f"publish, one per transaction    {_rate(res['publish_per_s'], 'events/s')}",
        f"publish_many, {PUBLISH_BATCH} a batch"
        f"      {_rate(res['publish_many_per_s'], 'events/s')}",
        f"relay alone                     {_rate(res['relay_per_s'], 'deliveries/s')}",
    ]
    if res.get("relay_backlog_per_s"):
        lines.append(
            f"relay, {res['relay_backlog_events']:,} backlog"
            f"{'':<{max(0, 17 - len(format(res['relay_backlog_events'], ',')))}}"
            f"{_rate(res['relay_backlog_per_s'], 'deliveries/s')}"
        )
    lines += [
        f"end to end                      {_rate(res['end_to_end_per_s'], 'deliveries/s')}",
        f"ceiling (bare httpx), best      {_rate(res['ceiling_per_s'], 'requests/s')}",
        "  by threads per process        "
        + ", ".join(
            f"{t}: {_short(fig)} requests/s"
            for t, fig in res.get("ceiling_by_threads_per_s", {}).items()
        ),
        f"pipeline / ceiling              {res['pipeline_ratio']:>10.2f}",
    ]
    return lines


def _observed(res: dict[str, Any]) -> list[str]:
    rss, lat, stages = res["peak_rss_mib"], res["latency_ms"], res["latency_stages_ms"]
    inflight, pg = res.get("in_flight", {}), res.get("worker_pg_connections", {})
    return [
        f"in flight at the receiver       peak {_short(inflight.get('peak'))},"
        f" time-weighted mean {_short(inflight.get('mean'), ',.1f')} (end to end)",
        f"worker Postgres connections     peak {_short(pg.get('peak'))},"
        f" mean {_short(pg.get('mean'), ',.1f')} (end to end)",
        "CPU per delivery (end to end)   "
        + ", ".join(f"{k} {v:.3f}" for k, v in res.get("cpu_ms_per_delivery", {}).items())
        + " ms (median of runs)",
        f"latency at {res['latency_offered_per_s']:g} events/s"
        f"{'':<{max(0, 16 - len(format(res['latency_offered_per_s'], 'g')))}}"
        f"p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms, max {lat['max']} ms",
        "  stages (p50 / p99)            "
        + ", ".join(f"{k} {v['p50']} / {v['p99']} ms" for k, v in stages.items()),
        f"peak RSS                        relay {rss.get('relay')} MiB"
        f" (alone {rss.get('relay_alone')} MiB), worker main {rss.get('worker_main')} MiB,"
        f" worker processes {rss.get('worker_processes')} MiB",
    ]


def _cpu(res: dict[str, Any]) -> list[str]:
    lines = []
    cpu_rows = (
        ("CPU, relay alone (last run)", [res.get("cpu_relay")]),
        ("CPU, end to end (last run)", res.get("cpu_end_to_end") or [None]),
        ("CPU, ceiling (last run)", res.get("cpu_ceiling") or [None]),
        ("CPU, latency phase", [res.get("cpu_latency")]),
    )
    for label, runs in cpu_rows:
        last = runs[-1]
        if last:
            parts = ", ".join(
                f"{k} {v:.2f}"
                for k, v in last.items()
                if k not in ("machine_busy_fraction", "other_top") and v
            )
            others = ", ".join(f"{k} {v:.2f}" for k, v in last["other_top"].items())
            lines.append(
                f"{label:<32}{parts} cores (machine {last['machine_busy_fraction']:.0%} busy)"
                + (f"; other: {others}" if others else "")
            )
    phases = [
        *(res.get("cpu_end_to_end") or []),
        *(res.get("cpu_ceiling") or []),
        res.get("cpu_latency") or {},
    ]
    noise = [cpu.get("other", 0.0) for cpu in phases]
    if noise and max(noise) >= 0.2:
        lines.append(
            f"  note: processes outside the bench used up to {max(noise):.2f} cores during a"
            " measured phase; on a shared machine the figures are noisy"
        )
    return lines


def _correctness(res: dict[str, Any]) -> list[str]:
    c = res["correctness"]
    e2e = c["end_to_end"]
    dupes = sum(x["duplicates"] for x in e2e) + c["latency"]["duplicates"]
    failed = sum(x["failed_requests"] for x in e2e) + c["latency"]["failed_requests"]
    dead = sum(x["dead"] for x in e2e) + c["latency"]["dead"]
    lines = [
        f"correctness                     {'ok' if c['ok'] else 'FAILED'}: {c['lost']} lost,"
        f" {dupes} duplicates, {dead} dead, {failed} answered 500 and retried;"
        f" signatures {c['signatures_checked']} checked, {c['signatures_bad']} bad",
    ]
    keys = res.get("options", {}).get("ordering_keys")
    if keys:
        overtaken = sum(x.get("order_violations", 0) for x in [*e2e, c["latency"]])
        lines.append(
            f"  ordered endpoints, {keys:,} ordering keys: {overtaken} requests overtook the"
            " event before them in their key"
        )
    unsuccessful: dict[str, int] = {}
    for run in [*e2e, c["latency"]]:
        for why, n in run.get("unsuccessful_attempts", {}).items():
            unsuccessful[why] = unsuccessful.get(why, 0) + n
    if unsuccessful:
        lines.append(
            "  attempts that did not succeed: "
            + ", ".join(f"{n} x {why}" for why, n in unsuccessful.items())
        )
    lines += [f"  {p}" for p in c["problems"]]
    return lines


def _targets(res: dict[str, Any]) -> list[str]:
    lines = ["targets (2-core machine)"]
    for name, t in res["targets"].items():
        value = t["value"]
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value}"
        lines.append(
            f"  {name:<28}{shown:>12}  {t['target']:<12} {'met' if t['met'] else 'MISSED'}"
        )
    return lines
