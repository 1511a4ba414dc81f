"""The phases: publish, relay alone, the pipeline (ceiling, end to end, latency)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import psycopg

from producers import Event, publish, publish_many
from worker.bench.ceiling import Ceiling
from worker.bench.figures import (
    cpu_ms_per_delivery,
    figure,
    median,
    percentile,
    targets,
    worker_args,
)
from worker.bench.options import CEILING_THREADS, CPU_ROLES, EVENT_TYPE, payload
from worker.bench.system import CpuMeter, Daemon, Sampler, peak_rss_mib, worker_connections
from worker.store import bench


class Bench(Ceiling):
    """One run: set up, measure each figure, check correctness, clean up."""

    def measure_publish(self) -> None:
        """Publish one event per transaction, then in batches; no relay running."""
        single, many = [], []
        n_single = max(1, min(self.opts.single_events, self.opts.events))
        size = self.opts.payload_bytes
        for r in range(self.opts.repeats):
            self.reset()
            started = time.perf_counter()
            for i in range(n_single):
                with self.conn.transaction():
                    publish(self.conn, EVENT_TYPE, payload(i, size))
            single.append(n_single / (time.perf_counter() - started))
            self.reset()
            started = time.perf_counter()
            self.publish_batches(self.opts.events)
            many.append(self.opts.events / (time.perf_counter() - started))
            self.say(
                f"  publish run {r + 1}: {single[-1]:,.0f}/s one per transaction,"
                f" {many[-1]:,.0f}/s publish_many"
            )
        self.reset()
        self.results["publish_per_s"] = figure(single)
        self.results["publish_many_per_s"] = figure(many)

    def measure_relay(self) -> None:
        """Time the relay alone turning committed events into queued deliveries."""
        expected = self.opts.events * self.opts.endpoints
        relay = self.start("relay", "relay")
        self._wait_listening(relay)
        runs = []
        for r in range(self.opts.repeats):
            self.reset()
            key = self.opts.ordering_key
            events = [
                Event(EVENT_TYPE, payload(i, self.opts.payload_bytes), ordering_key=key(i))
                for i in range(self.opts.events)
            ]
            with self.conn.transaction():
                publish_many(self.conn, events)
            committed = time.perf_counter()
            meter = CpuMeter(self.roles)
            meter.start()
            done = self._wait_fanned_out(self.opts.events, relay)
            self.results["cpu_relay"] = meter.stop()
            runs.append(expected / (done - committed))
            self.say(f"  relay run {r + 1}: {runs[-1]:,.0f} deliveries/s")
        self.results["peak_rss_mib"] = {"relay_alone": peak_rss_mib(relay.process.pid)}
        self.stop(relay)
        self.reset()
        self.results["relay_per_s"] = figure(runs)
        self.results["relay_backlog_per_s"] = None
        if self.opts.backlog:
            self._measure_backlog()

    def _measure_backlog(self) -> None:
        backlog = self.opts.backlog
        expected = backlog * self.opts.endpoints
        self.say(f"  publishing a backlog of {backlog:,} events")
        self.publish_batches(backlog)
        relay = self.start("relay-backlog", "relay")
        # The relay listens just before its first fan-out: time from there, not from the
        # process start (interpreter start-up is not relaying).
        self._wait_listening(relay, interval=0.001)
        started = time.perf_counter()
        done = self._wait_fanned_out(backlog, relay)
        rate = expected / max(done - started, 1e-9)
        self.say(f"  relay with a backlog of {backlog:,}: {rate:,.0f} deliveries/s")
        self.results["relay_backlog_per_s"] = figure([rate])
        self.results["relay_backlog_events"] = backlog
        self.results["peak_rss_mib"]["relay_backlog"] = peak_rss_mib(relay.process.pid)
        self.stop(relay)
        self.reset()

    def start_pipeline(self) -> tuple[Daemon, Daemon]:
        """Start the relay and the workers and wait until a warm-up batch went through."""
        relay = self.start("relay", "relay")
        workers = self.start("worker", *worker_args(self.opts))
        self._wait_listening(relay)
        assert self.receiver is not None
        warm = self.publish_batches(self.opts.processes * self.opts.threads * 4)
        self.wait_received(len(warm) * self.opts.endpoints, [relay, workers])
        self.wait_settled([relay, workers])
        self.receiver.take()
        self.reset()
        return relay, workers

    def measure_end_to_end(
        self, relay: Daemon, workers: Daemon
    ) -> tuple[float, dict[str, Any], dict[str, Any]]:
        """Publish every event as fast as possible and time until the last is received.

        Return the rate, the correctness check, and what was observed meanwhile: requests in
        flight at the receiver, the workers' Postgres connections, CPU per delivery by role.
        """
        assert self.receiver is not None
        self.reset()
        self.receiver.take()  # the receiver's in-flight window opens here
        meter = CpuMeter(self.roles)
        with (
            psycopg.connect(self.db_url, autocommit=True) as watch,
            Sampler(lambda: worker_connections(watch)) as pg,
        ):
            meter.start()
            started = time.time()
            event_ids = self.publish_batches(self.opts.events)
            published = time.time()
            expected = len(event_ids) * self.opts.endpoints
            summary = self.wait_received(expected, [relay, workers])
            cpu = meter.stop()
        state = self.wait_settled([relay, workers])
        _, records = self.receiver.take()
        check = self.check_delivered("end to end", event_ids, records, state)
        check["publish_seconds"] = round(published - started, 3)
        self.results.setdefault("cpu_end_to_end", []).append(cpu)
        seen = {
            "in_flight_peak": summary["in_flight_peak"],
            "in_flight_mean": summary["in_flight_mean"],
            "pg_connections": pg.summary(),
            "cpu_ms_per_delivery": cpu_ms_per_delivery(meter.cores, meter.seconds, expected),
        }
        return expected / (summary["last_new"] - started), check, seen

    def measure_latency(self, relay: Daemon, workers: Daemon) -> None:
        """Publish one event per transaction at --rate (open loop); time commit to receipt."""
        assert self.receiver is not None
        self.reset()
        count = max(1, round(self.opts.rate * self.opts.duration))
        committed: dict[str, float] = {}
        late = 0.0
        size = self.opts.payload_bytes
        meter = CpuMeter(self.roles)
        meter.start()
        begin = time.perf_counter() + 0.05
        for i in range(count):
            delay = begin + i / self.opts.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                late = max(late, -delay)
            with self.conn.transaction():
                event_id = publish(
                    self.conn,
                    EVENT_TYPE,
                    payload(i, size),
                    ordering_key=self.opts.ordering_key(i),
                )
            committed[event_id] = time.time()
        offered = count / (time.perf_counter() - begin)
        self.wait_received(count * self.opts.endpoints, [relay, workers])
        self.results["cpu_latency"] = meter.stop()
        state = self.wait_settled([relay, workers])
        _, records = self.receiver.take()
        check = self.check_delivered("latency", list(committed), records, state)
        times, paths, ids, codes = records
        first: dict[tuple[str, str], float] = {}
        for at, path, msg_id, code in zip(times, paths, ids, codes, strict=True):
            key = (msg_id.decode(), path.decode())
            if code == 200 and key not in first:
                first[key] = at
        latencies = sorted(at - committed[e] for (e, _), at in first.items() if e in committed)
        self.results["latency_ms"] = {
            name: round(percentile(latencies, p) * 1000, 2)
            for name, p in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
        }
        self.results["latency_offered_per_s"] = round(offered, 1)
        self.results["latency_publisher_max_late_ms"] = round(late * 1000, 2)
        self.results["latency_stages_ms"] = self._stages(committed, first)
        self.results["correctness"]["latency"] = check

    def _stages(
        self, committed: dict[str, float], first: dict[tuple[str, str], float]
    ) -> dict[str, dict[str, float]]:
        """Split each latency: commit -> delivery row, -> attempt start, -> received."""
        stages: dict[str, list[float]] = {"relay": [], "queue": [], "http": []}
        for row in bench.stages(self.conn):
            at = first.get((row.event_id, self.endpoint_paths.get(row.endpoint_id, "")))
            commit = committed.get(row.event_id)
            if at is None or commit is None:
                continue
            stages["relay"].append(row.created - commit)
            stages["queue"].append(row.started - row.created)
            stages["http"].append(at - row.started)
        out = {}
        for name, values in stages.items():
            values.sort()
            out[name] = {
                "p50": round(percentile(values, 50) * 1000, 2),
                "p99": round(percentile(values, 99) * 1000, 2),
            }
        return out

    def measure_pipeline(self) -> None:
        """Start the pipeline; alternate ceiling and end-to-end runs; then the latency phase."""
        relay, workers = self.start_pipeline()
        by_threads: dict[int, list[float]] = {t: [] for t in CEILING_THREADS}
        ceilings, pipelines, checks, seen = [], [], [], []
        for r in range(self.opts.repeats):
            for threads, runs in by_threads.items():
                runs.append(self.measure_ceiling(threads))
            ceilings.append(max(runs[-1] for runs in by_threads.values()))
            rate, check, observed = self.measure_end_to_end(relay, workers)
            pipelines.append(rate)
            checks.append(check)
            seen.append(observed)
            each = ", ".join(f"{t} threads {runs[-1]:,.0f}" for t, runs in by_threads.items())
            self.say(
                f"  run {r + 1}: ceiling {ceilings[-1]:,.0f} requests/s ({each}),"
                f" end to end {rate:,.0f} deliveries/s ({rate / ceilings[-1]:.2f});"
                f" in flight peak {observed['in_flight_peak']}"
            )
        res = self.results
        res["ceiling_per_s"] = figure(ceilings)  # the best of the thread counts, run by run
        res["ceiling_by_threads_per_s"] = {str(t): figure(runs) for t, runs in by_threads.items()}
        res["end_to_end_per_s"] = figure(pipelines)
        res["pipeline_ratio"] = round(
            res["end_to_end_per_s"]["median"] / res["ceiling_per_s"]["median"], 3
        )
        res["in_flight"] = {
            "peak": figure([s["in_flight_peak"] for s in seen]),
            "mean": figure([s["in_flight_mean"] for s in seen]),
        }
        res["worker_pg_connections"] = {
            "peak": figure([s["pg_connections"]["peak"] for s in seen]),
            "mean": figure([s["pg_connections"]["mean"] for s in seen]),
        }
        res["cpu_ms_per_delivery"] = {
            role: round(median([s["cpu_ms_per_delivery"][role] for s in seen]), 3)
            for role in CPU_ROLES
        }
        res["correctness"] = {"end_to_end": checks}
        self.say(f"  latency: {self.opts.rate:g} events/s for {self.opts.duration:g}s")
        self.measure_latency(relay, workers)
        rss = self.results["peak_rss_mib"]
        rss["relay"] = peak_rss_mib(relay.process.pid)
        tree = workers.tree()
        rss["worker_main"] = peak_rss_mib(tree[0]) if tree else None
        rss["worker_processes"] = [peak_rss_mib(pid) for pid in tree[1:]]
        self.stop(workers)
        self.stop(relay)

    def finish(self) -> dict[str, Any]:
        """Return every figure, the correctness verdict and the targets."""
        assert self.receiver is not None
        signatures = self.receiver.summary()
        res = self.results
        if signatures["bad"]:
            self.problems.append(f"bad signatures: {signatures['problems']}")
        res["correctness"]["signatures_checked"] = signatures["checked"]
        res["correctness"]["signatures_bad"] = signatures["bad"]
        lost = sum(c["lost"] for c in res["correctness"]["end_to_end"])
        lost += res["correctness"]["latency"]["lost"]
        res["correctness"]["lost"] = lost
        res["correctness"]["ok"] = not self.problems
        res["correctness"]["problems"] = list(self.problems)
        res["options"] = {
            k: v
            for k, v in asdict(self.opts).items()
            if k not in ("database_url", "redis_url", "secret_key")
        }
        res["targets"] = targets(res)
        return res
