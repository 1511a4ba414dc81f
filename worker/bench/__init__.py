"""`webhooks bench`: a reproducible end-to-end benchmark of the whole pipeline on one machine.

It builds everything it measures and removes it afterwards: its own Postgres database (created
on the configured, local or embedded server, dropped at the end), its own Redis database
number, a fast loopback receiver in its own process, and the real `webhooks relay` and
`webhooks worker` commands as child processes. Each figure is the median of ``--repeats``
runs:

- publish: `publish`, one event per transaction, and `publish_many`, a batch per transaction;
- relay alone: deliveries created and enqueued per second with no worker running (and, with
  ``--backlog``, behind a large backlog);
- end to end: deliveries per second from the start of publishing to receipt, workers included;
  meanwhile the requests in flight at the receiver, the worker processes' Postgres connections
  and the CPU each role spends per delivery;
- ceiling: as many processes, at 8 and at 32 threads each, posting pre-signed requests to the
  same receiver with a bare ``httpx.Client`` (no database, no queue); the best of the two, and
  the ratio pipeline / ceiling;
- latency: commit to receipt at an open-loop offered load (``--rate``), p50 to max;
- peak RSS (VmHWM) of the relay and of every worker process.

With ``--broker-url`` given more than once (`compare`), the whole benchmark runs once per
broker per round, the brokers alternating, and the report sets them side by side with the
load average of every run.

With ``--receiver-delay`` the receiver answers every request that long after it arrived, as
real receivers do (50-500 ms), without holding up the other requests.

Correctness is checked, not assumed: every delivery row must have succeeded, the receiver must
have counted every (event, endpoint) at least once, duplicates are reported, and a sample of
requests has its signature verified by the receiver with its own HMAC code.

The package reads in the order of a run: `options` (what to measure), `rig` (set up and tear
down), `tally` (the receiver), `steps` and `system` (what every phase does and watches),
`ceiling` and `measure` (the phases), `figures` (their arithmetic), `report`, and `main`.
"""

from __future__ import annotations

from worker.bench.ceiling import Ceiling
from worker.bench.figures import (
    ceiling_requests,
    cpu_ms_per_delivery,
    envelope_bytes,
    figure,
    median,
    percentile,
    targets,
    worker_args,
)
from worker.bench.main import run
from worker.bench.measure import Bench
from worker.bench.options import (
    CEILING_SECONDS,
    CEILING_THREADS,
    CPU_ROLES,
    EVENT_TYPE,
    MAX_RECEIVER_DELAY,
    PUBLISH_BATCH,
    STALL_SECONDS,
    VERIFY_EVERY,
    BenchError,
    Options,
    payload,
)
from worker.bench.report import render
from worker.bench.rig import Records, Rig, Services, find_services
from worker.bench.steps import Steps
from worker.bench.system import CpuMeter, Daemon, Sampler, peak_rss_mib, process_tree
from worker.bench.tally import ReceiverProcess, Tally, hmac_signature, signing_key
from worker.dev.server import InFlight

__all__ = [
    "CEILING_SECONDS",
    "CEILING_THREADS",
    "CPU_ROLES",
    "EVENT_TYPE",
    "MAX_RECEIVER_DELAY",
    "PUBLISH_BATCH",
    "STALL_SECONDS",
    "VERIFY_EVERY",
    "Bench",
    "BenchError",
    "Ceiling",
    "CpuMeter",
    "Daemon",
    "InFlight",
    "Options",
    "ReceiverProcess",
    "Records",
    "Rig",
    "Sampler",
    "Services",
    "Steps",
    "Tally",
    "ceiling_requests",
    "cpu_ms_per_delivery",
    "envelope_bytes",
    "figure",
    "find_services",
    "hmac_signature",
    "median",
    "payload",
    "peak_rss_mib",
    "percentile",
    "process_tree",
    "render",
    "run",
    "signing_key",
    "targets",
    "worker_args",
]
