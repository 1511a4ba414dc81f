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

With ``--receiver-delay`` the receiver answers every request that long after it arrived, as
real receivers do (50-500 ms), without holding up the other requests.

Correctness is checked, not assumed: every delivery row must have succeeded, the receiver must
have counted every (event, endpoint) at least once, duplicates are reported, and a sample of
requests has its signature verified by the receiver with its own HMAC code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import hashlib
import hmac
import json
import math
import multiprocessing
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from queue import Empty
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import psycopg
import redis
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from producers import publish, publish_many
from worker.embedded import EmbeddedServices, port_open
from worker.errors import WebhooksError
from worker.ops.endpoints import Endpoints
from worker.queue import Queue
from worker.queue import from_url as broker_from_url
from worker.queue import redis as queue
from worker.settings import Settings, parse_networks
from worker.store import migrate
from worker.store.vault import Vault

__all__ = ["BenchError", "Options", "render", "run"]

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
#: Redis databases tried, in order, when --redis-db is not given. 0 is the product's
#: default and 12 and 13 belong to test runs, so none of those is ever touched.
REDIS_DBS = (15, 14, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
CLAIM_KEY = "webhooks:bench:owner"
EVENT_TYPE = "bench.event"
#: Enough attempts that a delivery survives even a high --fail-rate (0.5**40 per delivery).
RETRY_SCHEDULE = "0s" + ",200ms" * 39
#: The bench's receiver listens on loopback, which the SSRF guard refuses unless allowed.
LOOPBACK = "127.0.0.0/8"
#: The receiver checks the signature of every request this often (and each path's first).
VERIFY_EVERY = 20
#: A wait fails when nothing new has arrived for this long. A circuit opened by consecutive
#: failures (--fail-rate) pauses an endpoint for 30 s or more, so this is generous.
STALL_SECONDS = 120.0
PUBLISH_BATCH = 1000
#: Threads per process of the two ceiling runs; the best is the ceiling. More threads keep
#: more requests in flight to a slow receiver but contend for the GIL with a fast one.
CEILING_THREADS = (8, 32)
#: With --receiver-delay a ceiling thread makes at most 1/delay requests a second, so the
#: ceiling sends only about this many seconds' worth (events x endpoints could take minutes).
CEILING_SECONDS = 5.0
#: The roles of the CPU-per-delivery figure, in the order shown.
CPU_ROLES = ("workers", "postgres", "redis", "relay", "receiver", "bench")
#: Well below the workers' attempt deadline (30 s by default), so no attempt times out.
MAX_RECEIVER_DELAY = 10.0
#: How often the worker processes' Postgres connections are counted during end to end.
SAMPLE_SECONDS = 0.05
#: The Dramatiq queue `webhooks relay` and `webhooks worker` use (in the bench's own Redis
#: database, so it is the bench's alone).
QUEUE = Settings().queue_name

_TRUNCATE = (
    "truncate webhooks.attempts, webhooks.dead_letters, webhooks.deliveries, webhooks.outbox"
)
_STATE = """
select (select count(*) from webhooks.outbox where relayed_at is null) as unrelayed,
       count(*) as deliveries,
       count(*) filter (where status = 'pending') as pending,
       count(*) filter (where status = 'succeeded') as succeeded,
       count(*) filter (where status = 'dead') as dead,
       coalesce(sum(attempts), 0) as attempts
from webhooks.deliveries
"""
_LISTENING = """
select count(*) as n from pg_stat_activity
where datname = current_database() and query ilike 'listen %%' and backend_start >= %(since)s
"""
# Every connection a worker process opens is named `webhooks-worker...` (worker.engine.actors); the
# bench's own connections are not.
_WORKER_CONNECTIONS = """
select count(*) as n from pg_stat_activity
where datname = current_database() and starts_with(application_name, 'webhooks-worker')
"""
_UNSUCCESSFUL = """
select error_kind, coalesce(status_code::text, left(error, 120)) as error, count(*) as n
from webhooks.attempts
where status_code is null or status_code not between 200 and 299
group by 1, 2 order by n desc limit 5
"""
# When each successful delivery was created by the relay and when its successful attempt
# started in a worker, for the latency breakdown.
_STAGES = """
select o.id::text as event_id, d.endpoint_id::text as endpoint_id,
       extract(epoch from d.created_at)::float8 as created,
       extract(epoch from a.started_at)::float8 as started
from webhooks.deliveries d
join webhooks.outbox o on o.id = d.event_id
join webhooks.attempts a on a.delivery_id = d.id and a.status_code between 200 and 299
where d.status = 'succeeded'
"""


class BenchError(WebhooksError):
    """Report a benchmark that could not run or finish (a process died, a wait stalled)."""


@dataclass(frozen=True)
class Options:
    """What to measure and how hard; the defaults give a run of a few minutes."""

    events: int = 20_000
    endpoints: int = 2
    processes: int = 2
    threads: int = 8
    payload_bytes: int = 256
    fail_rate: float = 0.0
    rate: float = 100.0
    duration: float = 10.0
    repeats: int = 3
    backlog: int = 0
    single_events: int = 2000
    database_url: str | None = None
    redis_url: str | None = None
    redis_db: int | None = None
    #: WEBHOOKS_BROKER_URL of the relay and workers (an amqp:// URL: RabbitMQ; its queue is
    #: purged before each phase). None: the bench's own Redis database.
    broker_url: str | None = None
    #: WEBHOOKS_SECRET_KEY: with it the endpoints' secrets are stored encrypted, as in
    #: production, and the workers decrypt them on every attempt.
    secret_key: str | None = None
    #: Seconds the receiver waits before answering each request.
    receiver_delay: float = 0.0
    #: `webhooks worker --concurrency`; None leaves the worker's default.
    concurrency: int | None = None

    def check(self) -> None:
        """Raise BenchError for values the benchmark cannot run with."""
        problems = [
            (self.events < 1, "--events must be at least 1"),
            (self.endpoints < 1, "--endpoints must be at least 1"),
            (self.processes < 1 or self.threads < 1, "--processes and --threads must be >= 1"),
            (not 0.0 <= self.fail_rate < 1.0, "--fail-rate must be in [0, 1)"),
            (self.rate <= 0 or self.duration <= 0, "--rate and --duration must be positive"),
            (self.repeats < 1, "--repeats must be at least 1"),
            (self.payload_bytes < 0, "--payload-bytes must not be negative"),
            (self.redis_db is not None and self.redis_db < 0, "--redis-db must be >= 0"),
            (
                self.broker_url is not None
                and not self.broker_url.startswith(("amqp://", "amqps://")),
                "--broker-url must be an amqp:// or amqps:// URL (Redis is the default)",
            ),
            (
                not 0.0 <= self.receiver_delay <= MAX_RECEIVER_DELAY,
                f"--receiver-delay must be between 0 and {MAX_RECEIVER_DELAY:g}s",
            ),
            (self.concurrency is not None and self.concurrency < 1, "--concurrency must be >= 1"),
        ]
        for bad, message in problems:
            if bad:
                raise BenchError(message)


# -- small helpers --------------------------------------------------------------------------


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


def payload(seq: int, size: int) -> dict[str, Any]:
    """Return a payload whose JSON is about `size` bytes."""
    return {"seq": seq, "pad": "x" * max(0, size - 24)}


def envelope_bytes(event_type: str, payload_json: str) -> bytes:
    """Return a Standard Webhooks body like the workers send."""
    stamp = "2024-01-01T00:00:00Z"
    return f'{{"type":"{event_type}","timestamp":"{stamp}","data":{payload_json}}}'.encode()


def hmac_signature(key: bytes, msg_id: bytes, stamp: bytes, body: bytes) -> bytes:
    """Return ``v1,<base64 HMAC-SHA256>``, computed independently of `worker.policy.signing`."""
    digest = hmac.new(key, msg_id + b"." + stamp + b"." + body, hashlib.sha256).digest()
    return b"v1," + base64.b64encode(digest)


def signing_key(secret: str) -> bytes:
    """Return the key bytes of a ``whsec_`` secret."""
    text = secret.removeprefix("whsec_")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        return f"unix://{parts.path}?{urlencode(query)}"  # urlunsplit would drop the //
    return urlunsplit(parts._replace(path=f"/{db}"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # Linux: the child gets SIGTERM if the bench itself is killed, so nothing is left running.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# -- /proc: peak memory and CPU use ------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """Return `pid` and all its live descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def peak_rss_mib(pid: int) -> float | None:
    """Return a process's peak resident set (VmHWM) in MiB, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _cpu_ticks() -> dict[int, tuple[str, int, int]]:
    """Return the command name, start time and user+system clock ticks of every process."""
    out: dict[int, tuple[str, int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.find("(") + 1 : raw.rfind(")")]
        rest = raw[raw.rfind(")") + 2 :].split()
        out[int(entry.name)] = (name, int(rest[19]), int(rest[11]) + int(rest[12]))
    return out


def _machine_ticks() -> tuple[int, int]:
    """Return (busy, total) clock ticks of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


class CpuMeter:
    """Attribute the CPU used during a phase to roles: workers, relay, postgres, redis..."""

    def __init__(self, roles: Callable[[], dict[int, str]]) -> None:
        self._roles = roles
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start: dict[int, tuple[str, int, int]] = {}
        self._machine = (0, 0)
        self._t0 = 0.0
        #: Set by `stop`, unrounded, for figures per delivery: cores by role and the seconds.
        self.cores: dict[str, float] = {}
        self.seconds = 0.0

    def start(self) -> None:
        """Take the first snapshot."""
        self._start, self._machine, self._t0 = _cpu_ticks(), _machine_ticks(), time.monotonic()

    def stop(self) -> dict[str, Any]:
        """Return the CPUs (cores busy on average) each role used since `start`."""
        end, machine, wall = _cpu_ticks(), _machine_ticks(), time.monotonic() - self._t0
        roles = self._roles()
        used: dict[str, float] = {}
        others: dict[str, float] = {}
        for pid, (name, born, ticks) in end.items():
            before = self._start.get(pid)
            # The same process if it started at the same time (kernel threads change names).
            delta = ticks - (before[2] if before and before[1] == born else 0)
            if delta <= 0:
                continue
            cores = delta / self._hz / max(wall, 1e-9)
            role = roles.get(pid)
            if role is None:
                role = {"postgres": "postgres", "redis-server": "redis"}.get(name, "other")
                if role == "other":
                    others[name] = others.get(name, 0.0) + cores
            used[role] = used.get(role, 0.0) + cores
        busy = (machine[0] - self._machine[0]) / max(1, machine[1] - self._machine[1])
        self.cores, self.seconds = dict(used), wall
        result: dict[str, Any] = {
            k: round(v, 2) for k, v in sorted(used.items(), key=lambda kv: -kv[1])
        }
        result["machine_busy_fraction"] = round(busy, 2)
        # Postgres and Redis count whoever uses them: other users of a shared machine too.
        top = sorted(others.items(), key=lambda kv: -kv[1])[:3]
        result["other_top"] = {k: round(v, 2) for k, v in top if v >= 0.01}
        return result


# -- the receiver (its own process) ---------------------------------------------------------

_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
_FAIL = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
_BAD = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_MAX_HEAD = 64 * 1024


def _header(head: bytes, lower: bytes, name: bytes) -> bytes | None:
    at = lower.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


class Tally:
    """Count every request with its arrival time; verify a sample; answer 200 or 500.

    Paths ``/e/<n>`` are the pipeline's endpoints (``fail_rate`` applies), ``/c/<n>`` the
    ceiling's.
    """

    def __init__(self, fail_rate: float, verify_every: int = VERIFY_EVERY) -> None:
        self.fail_rate = fail_rate
        self.verify_every = verify_every
        self.keys: dict[bytes, bytes] = {}
        self.random = random.Random(7).random
        self.checked = 0
        self.bad = 0
        self.problems: list[str] = []
        self._seen: set[bytes] = set()
        self.clear()

    def clear(self) -> None:
        """Forget the requests counted so far (not the signature checks)."""
        self.times: list[float] = []
        self.paths: list[bytes] = []
        self.ids: list[bytes] = []
        self.codes: list[int] = []
        self.ok: set[tuple[bytes, bytes]] = set()
        self.last_new = 0.0

    def handle(self, head: bytes, body: bytes, now: float) -> bytes:
        """Record one request; return the response to write."""
        lower = head.lower()
        line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
        parts = line.split(b" ")
        path = parts[1] if len(parts) > 2 else b""
        event_id = _header(head, lower, b"webhook-id") or b""
        self.times.append(now)
        self.paths.append(path)
        self.ids.append(event_id)
        if path not in self._seen or len(self.times) % self.verify_every == 0:
            self._seen.add(path)
            self._verify(path, head, lower, event_id, body, now)
        if self.fail_rate and path.startswith(b"/e/") and self.random() < self.fail_rate:
            self.codes.append(500)
            return _FAIL
        self.codes.append(200)
        pair = (event_id, path)
        if pair not in self.ok:
            self.ok.add(pair)
            self.last_new = now
        return _OK

    def _verify(
        self, path: bytes, head: bytes, lower: bytes, event_id: bytes, body: bytes, now: float
    ) -> None:
        key = self.keys.get(path)
        if key is None:
            return
        self.checked += 1
        stamp = _header(head, lower, b"webhook-timestamp") or b"0"
        given = (_header(head, lower, b"webhook-signature") or b"").split(b" ")
        problem = None
        if hmac_signature(key, event_id, stamp, body) not in given:
            problem = "signature does not verify"
        # The ceiling's requests are all signed before it starts, so a long one outlives
        # the 5-minute tolerance; only the pipeline's must be fresh.
        elif path.startswith(b"/e/") and abs(now - int(stamp)) > 300:
            problem = "timestamp outside tolerance"
        else:
            try:
                parsed = json.loads(body)
                if set(parsed) != {"type", "timestamp", "data"}:
                    problem = f"unexpected body fields {sorted(parsed)}"
            except ValueError:
                problem = "body is not JSON"
        if problem:
            self.bad += 1
            if len(self.problems) < 10:
                self.problems.append(f"{path.decode()} {event_id.decode()}: {problem}")

    def summary(self) -> dict[str, Any]:
        """Return counts of what arrived since the last `clear`."""
        return {
            "requests": len(self.times),
            "ok_pairs": len(self.ok),
            "failed": self.codes.count(500),
            "last_new": self.last_new,
            "checked": self.checked,
            "bad": self.bad,
            "problems": list(self.problems),
        }


class InFlight:
    """Count the requests received but not answered yet: the peak and the time-weighted mean.

    Exact accounting (every arrival and answer moves the count), over a window that
    `restart` opens; times are seconds on any monotonic clock.
    """

    def __init__(self, now: float) -> None:
        self.current = 0
        self.restart(now)

    def restart(self, now: float) -> None:
        """Open a new window; requests still waiting carry over into it."""
        self.since = self.last = now
        self.area = 0.0  # integral of `current` over time since `since`
        self.peak = self.current

    def _advance(self, now: float) -> None:
        self.area += self.current * max(0.0, now - self.last)
        self.last = max(self.last, now)

    def received(self, now: float) -> None:
        """Count a request that arrived."""
        self._advance(now)
        self.current += 1
        self.peak = max(self.peak, self.current)

    def answered(self, now: float) -> None:
        """Count a request answered (or whose connection closed before its answer)."""
        self._advance(now)
        self.current -= 1

    def summary(self, now: float) -> dict[str, float]:
        """Return the peak and the time-weighted mean since `restart`."""
        self._advance(now)
        span = now - self.since
        mean = self.area / span if span > 0 else float(self.current)
        return {"in_flight_peak": self.peak, "in_flight_mean": round(mean, 2)}


class _HttpConnection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining; just enough for webhook POSTs.

    With a delay, each answer is written that long after its request arrived, from a timer,
    so the other requests (on this connection and the others) go on meanwhile.
    """

    def __init__(self, tally: Tally, in_flight: InFlight, delay: float) -> None:
        self.tally = tally
        self.in_flight = in_flight
        self.delay = delay
        self.buffer = bytearray()
        self.waiting: deque[bytes] = deque()  # answers not written yet, in request order
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        now = self.loop.time()
        for _ in self.waiting:  # never answered, but no longer in flight either
            self.in_flight.answered(now)
        self.waiting.clear()

    def _answer(self) -> None:
        # Each timer writes the oldest waiting answer, not "its own": HTTP/1.1 answers in
        # request order, and with one delay for all the oldest is the one that is due.
        if not self.waiting:
            return  # the connection was lost meanwhile
        response = self.waiting.popleft()
        self.in_flight.answered(self.loop.time())
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(response)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        clock = self.loop.time()
        buffer = self.buffer
        buffer += data
        transport = self.transport
        assert transport is not None
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    transport.write(_BAD)
                    transport.close()
                return
            head = bytes(buffer[:end])
            length_text = _header(head, head.lower(), b"content-length") or b"0"
            try:
                length = int(length_text)
            except ValueError:
                transport.write(_BAD)
                transport.close()
                return
            total = end + 4 + length
            if len(buffer) < total:
                return
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            response = self.tally.handle(head, body, now)
            self.in_flight.received(clock)
            if self.delay > 0:
                self.waiting.append(response)
                self.loop.call_later(self.delay, self._answer)
            else:
                self.in_flight.answered(clock)
                transport.write(response)


async def _serve(conn: Connection, fail_rate: float, delay: float) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally(fail_rate)
    in_flight = InFlight(loop.time())
    server = await loop.create_server(
        lambda: _HttpConnection(tally, in_flight, delay),
        "127.0.0.1",
        0,
        backlog=1024,
        reuse_address=True,
    )
    conn.send(server.sockets[0].getsockname()[1])
    done: asyncio.Future[None] = loop.create_future()

    def command() -> None:
        try:
            name, *args = conn.recv()
        except (EOFError, OSError):
            name, args = "stop", []
        if name == "keys":
            tally.keys.update({p.encode(): signing_key(s) for p, s in args[0].items()})
            conn.send(True)
        elif name == "summary":
            conn.send({**tally.summary(), **in_flight.summary(loop.time())})
        elif name == "take":
            records = (tally.times, tally.paths, tally.ids, tally.codes)
            summary = {**tally.summary(), **in_flight.summary(loop.time())}
            tally.clear()
            in_flight.restart(loop.time())
            conn.send((summary, records))
        elif name == "stop" and not done.done():
            done.set_result(None)

    loop.add_reader(conn.fileno(), command)
    await done
    server.close()


def _receiver_main(
    conn: Connection, fail_rate: float, delay: float
) -> None:  # pragma: no cover - child
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
    asyncio.run(_serve(conn, fail_rate, delay))


class ReceiverProcess:
    """Run the receiver in its own process and talk to it over a pipe."""

    def __init__(self, fail_rate: float, delay: float = 0.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_receiver_main,
            args=(child, fail_rate, delay),
            name="bench-receiver",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.port = int(self._call_result(30.0))

    def _call_result(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise BenchError("the receiver did not answer")
        return self._conn.recv()

    def url(self, path: str) -> str:
        """Return the URL of a path on the receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def keys(self, secrets_by_path: dict[str, str]) -> None:
        """Tell the receiver the secret of each path, for the sampled signature checks."""
        self._conn.send(("keys", secrets_by_path))
        self._call_result(30.0)

    def summary(self) -> dict[str, Any]:
        """Return counts (and the requests in flight) since the last `take`."""
        self._conn.send(("summary",))
        result: dict[str, Any] = self._call_result(30.0)
        return result

    def take(
        self,
    ) -> tuple[dict[str, Any], tuple[list[float], list[bytes], list[bytes], list[int]]]:
        """Return the counts and every request record since the last `take`, and forget them."""
        self._conn.send(("take",))
        result: tuple[dict[str, Any], tuple[list[float], list[bytes], list[bytes], list[int]]] = (
            self._call_result(120.0)
        )
        return result

    def stop(self) -> None:
        """Stop the process."""
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send(("stop",))
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self._conn.close()


# -- sampling during a phase ---------------------------------------------------------------------


class Sampler:
    """Call `probe` every `interval` seconds on a thread of its own and keep its values.

    The samples are evenly spaced, so their plain mean is the time-weighted mean.
    """

    def __init__(self, probe: Callable[[], float | None], interval: float = SAMPLE_SECONDS) -> None:
        self.probe = probe
        self.interval = interval
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            value = self.probe()  # first sample at once: a short phase still gets one
            if value is not None:
                self.values.append(value)
            if self._stop.wait(self.interval):
                return

    def summary(self) -> dict[str, float]:
        """Return the peak and the mean of the samples (0 without any)."""
        if not self.values:
            return {"peak": 0.0, "mean": 0.0}
        return {"peak": max(self.values), "mean": round(statistics.fmean(self.values), 2)}


def worker_connections(conn: psycopg.Connection[Any]) -> float | None:
    """Return how many Postgres connections the worker processes hold, None if unknown."""
    try:
        row = conn.execute(_WORKER_CONNECTIONS).fetchone()
    except psycopg.Error:
        return None  # one lost sample; the phase goes on
    return float(row[0]) if row is not None else None


# -- the ceiling: bare httpx clients, no database, no queue ------------------------------------


def _load_main(  # pragma: no cover - runs in a child process
    index: int,
    urls: list[str],
    secret: str,
    count: int,
    threads: int,
    payload_bytes: int,
    go: Any,
    out: Any,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    key = signing_key(secret)
    body_json = json.dumps(payload(0, payload_bytes), separators=(",", ":"))
    body = envelope_bytes(EVENT_TYPE, body_json)
    stamp = str(int(time.time())).encode()
    requests: list[tuple[str, dict[str, str]]] = []
    for i in range(count):
        msg_id = f"ceil_{index}_{i}".encode()
        requests.append(
            (
                urls[i % len(urls)],
                {
                    "content-type": "application/json",
                    "webhook-id": msg_id.decode(),
                    "webhook-timestamp": stamp.decode(),
                    "webhook-signature": hmac_signature(key, msg_id, stamp, body).decode(),
                },
            )
        )
    spans: list[tuple[float, float, int, int]] = []
    lock = threading.Lock()

    def post(mine: list[tuple[str, dict[str, str]]]) -> None:
        # One client per thread: a client shared by 32 threads is slower, and its pool can
        # close a connection a request was just given (encode/httpcore#1110), an error of
        # the baseline's own that was counted against the bench's correctness.
        sent = errors = 0
        started = time.time()
        with httpx.Client(timeout=30.0, trust_env=False) as client:
            for url, headers in mine:
                try:
                    client.post(url, content=body, headers=headers)
                    sent += 1
                except httpx.HTTPError:
                    errors += 1
        with lock:
            spans.append((started, time.time(), sent, errors))

    workers = [threading.Thread(target=post, args=(requests[t::threads],)) for t in range(threads)]
    out.put(("ready", index))
    go.wait()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put(
        (
            "done",
            min(s[0] for s in spans),
            max(s[1] for s in spans),
            sum(s[2] for s in spans),
            sum(s[3] for s in spans),
        )
    )


# -- child processes: `webhooks relay` and `webhooks worker` -----------------------------------


@dataclass
class Daemon:
    """A `webhooks` command running in its own session, stopped with SIGTERM."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    started: datetime

    @classmethod
    def start(cls, name: str, args: list[str], env: dict[str, str], logdir: Path) -> Daemon:
        """Start ``python -m worker.cli ARGS`` with its output in a log file."""
        log = logdir / f"{name}.log"
        started = datetime.now(UTC)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench only; it stops these
                preexec_fn=_die_with_parent,
            )
        return cls(name, process, log, started)

    def check(self) -> None:
        """Raise BenchError with the end of the log if the process has exited."""
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
            raise BenchError(
                f"`webhooks {self.name}` exited with status {self.process.returncode}: "
                + (" | ".join(tail) or "no output")
            )

    def tree(self) -> list[int]:
        """Return the pids of the command and its children (Dramatiq's worker processes)."""
        return process_tree(self.process.pid) if self.process.poll() is None else []

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait, then SIGKILL the whole session (only processes it started)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                # The leader is alive, so its process group id still names only its group.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


# -- services -----------------------------------------------------------------------------------


@dataclass
class Services:
    """Where the bench's Postgres database and Redis database live."""

    admin_url: str
    redis_base: str
    source: str
    embedded: EmbeddedServices | None = None


def find_services(database_url: str | None, redis_url: str | None) -> Services:
    """Use the configured services, else the local default ports, else embedded ones."""
    embedded: EmbeddedServices | None = None
    sources = []
    if database_url:
        admin, sources = database_url, ["DATABASE_URL"]
    elif port_open("127.0.0.1", 5432):
        admin, sources = LOCAL_POSTGRES, ["local postgres"]
    else:
        embedded = EmbeddedServices()
        admin, sources = embedded.postgres_url(), ["embedded postgres"]
    if redis_url:
        base = redis_url
        sources.append("REDIS_URL")
    elif port_open("127.0.0.1", 6379):
        base = LOCAL_REDIS
        sources.append("local redis")
    else:
        embedded = embedded or EmbeddedServices()
        base = embedded.redis_url()
        sources.append("embedded redis")
    return Services(admin, base, ", ".join(sources), embedded)


# -- the benchmark --------------------------------------------------------------------------------

Records = tuple[list[float], list[bytes], list[bytes], list[int]]


@dataclass
class Bench:
    """One run: set up, measure each figure, check correctness, clean up."""

    opts: Options
    say: Callable[[str], None]
    services: Services | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="webhooks-bench-")))
    db_name: str = field(default_factory=lambda: f"webhooks_bench_{secrets.token_hex(4)}")
    db_url: str = ""
    redis_url: str = ""
    redis_db: int | None = None
    receiver: ReceiverProcess | None = None
    daemons: list[Daemon] = field(default_factory=list)
    load_pids: list[int] = field(default_factory=list)
    endpoint_paths: dict[str, str] = field(default_factory=dict)  # endpoint id -> path
    ceiling_secret: str = ""
    results: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    failed: bool = False
    _conn: psycopg.Connection[dict[str, Any]] | None = None
    _redis: redis.Redis | None = None
    _queue: Queue | None = None
    _claim: str = field(default_factory=lambda: secrets.token_hex(8))
    _db_created: bool = False
    _stop_refresh: threading.Event = field(default_factory=threading.Event)

    # -- set up and tear down ---------------------------------------------------------------

    @property
    def conn(self) -> psycopg.Connection[dict[str, Any]]:
        assert self._conn is not None
        return self._conn

    @property
    def rds(self) -> redis.Redis:
        assert self._redis is not None
        return self._redis

    def setup(self) -> None:
        """Create the database, claim a Redis database, start the receiver, add endpoints."""
        self.opts.check()
        self.services = find_services(self.opts.database_url, self.opts.redis_url)
        try:
            with psycopg.connect(self.services.admin_url, autocommit=True) as admin:
                admin.execute(f'create database "{self.db_name}"')
        except psycopg.Error as exc:
            raise BenchError(f"cannot create the bench database: {exc}".strip()) from exc
        self._db_created = True
        self.db_url = make_conninfo(self.services.admin_url, dbname=self.db_name)
        self._conn = psycopg.connect(self.db_url, autocommit=True, row_factory=dict_row)
        migrate.migrate(self.conn)
        self._claim_redis_db()
        self.receiver = ReceiverProcess(self.opts.fail_rate, self.opts.receiver_delay)
        registry = Endpoints(
            self.conn, Vault(self.opts.secret_key), allowed_networks=parse_networks(LOOPBACK)
        )
        keys: dict[str, str] = {}
        for k in range(self.opts.endpoints):
            ep, secret = registry.add(self.receiver.url(f"/e/{k}"), description="bench")
            self.endpoint_paths[ep.id] = f"/e/{k}"
            keys[f"/e/{k}"] = secret
        self.ceiling_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        keys.update({f"/c/{k}": self.ceiling_secret for k in range(self.opts.endpoints)})
        self.receiver.keys(keys)
        self.results["machine"] = self._machine()
        self.results["database"] = self.db_name

    def _claim_redis_db(self) -> None:
        assert self.services is not None
        candidates = [self.opts.redis_db] if self.opts.redis_db is not None else REDIS_DBS
        for db in candidates:
            url = _with_redis_db(self.services.redis_base, db)
            client = redis.Redis.from_url(url, socket_timeout=10)
            try:
                if not client.set(CLAIM_KEY, self._claim, nx=True, ex=120):
                    continue
                if self.opts.redis_db is None and client.dbsize() > 1:
                    client.delete(CLAIM_KEY)  # someone else's data: not ours to touch
                    continue
            except redis.ResponseError:  # no such database number on this server
                client.close()
                continue
            except redis.RedisError as exc:
                raise BenchError(f"cannot use Redis at {url}: {exc}") from exc
            self._redis, self.redis_url, self.redis_db = client, url, db
            threading.Thread(target=self._refresh_claim, daemon=True).start()
            return
        raise BenchError("no empty Redis database to use: pass --redis-db N")

    def _refresh_claim(self) -> None:
        while not self._stop_refresh.wait(30):
            with contextlib.suppress(redis.RedisError):
                self.rds.set(CLAIM_KEY, self._claim, ex=120)

    def close(self) -> None:
        """Stop every process started and remove the database and Redis data; never raises."""
        for daemon in self.daemons:
            with contextlib.suppress(Exception):
                daemon.stop()
        self.daemons.clear()
        if self.receiver is not None:
            with contextlib.suppress(Exception):
                self.receiver.stop()
        self._stop_refresh.set()
        if self._queue is not None:
            self._queue.close()
        if self.rabbit:
            with contextlib.suppress(Exception):
                self._purge_rabbit()
        if self._redis is not None:
            with contextlib.suppress(redis.RedisError):
                if self._redis.get(CLAIM_KEY) == self._claim.encode():
                    self._redis.flushdb()
            self._redis.close()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        if self._db_created and self.services is not None:
            try:
                with psycopg.connect(self.services.admin_url, autocommit=True) as admin:
                    admin.execute(f'drop database if exists "{self.db_name}" with (force)')
            except psycopg.Error as exc:
                self.say(f"warning: could not drop database {self.db_name}: {exc}")
        if self.services is not None and self.services.embedded is not None:
            with contextlib.suppress(Exception):
                self.services.embedded.stop()
        if self.problems or self.failed:
            self.say(f"logs of the relay and workers kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _machine(self) -> dict[str, Any]:
        assert self.services is not None
        model = ""
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        pg = self.conn.execute(
            "select current_setting('server_version') as v,"
            " current_setting('synchronous_commit') as sc, current_setting('fsync') as f"
        ).fetchone()
        assert pg is not None
        info = self.rds.info("server")
        return {
            "cpus": os.cpu_count(),
            "cpu_model": model,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "postgres": pg["v"],
            "postgres_synchronous_commit": pg["sc"],
            "postgres_fsync": pg["f"],
            "redis": info.get("redis_version"),
            "services": self.services.source,
            "redis_db": self.redis_db,
            "broker": "rabbitmq" if self.rabbit else "redis",
            "secrets_encrypted": self.opts.secret_key is not None,
        }

    def env(self) -> dict[str, str]:
        """Return the environment of the relay and worker commands."""
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.db_url,
                "REDIS_URL": self.redis_url,
                "WEBHOOKS_BROKER_URL": self.opts.broker_url or self.redis_url,
                "WEBHOOKS_ALLOWED_NETWORKS": LOOPBACK,
                "WEBHOOKS_RETRY_SCHEDULE": RETRY_SCHEDULE,
                "WEBHOOKS_METRICS_PORT": str(_free_port()),
                "WEBHOOKS_RELAY_METRICS_PORT": str(_free_port()),
            }
        )
        return env

    def start(self, name: str, *args: str) -> Daemon:
        """Start a `webhooks` command; stopped by `close` whatever happens."""
        daemon = Daemon.start(name, list(args), self.env(), self.workdir)
        self.daemons.append(daemon)
        return daemon

    def stop(self, daemon: Daemon) -> None:
        """Stop one command started by `start`."""
        daemon.stop()
        self.daemons.remove(daemon)

    def roles(self) -> dict[int, str]:
        """Map the pids of the processes this bench started to what they are."""
        out = {os.getpid(): "bench"}
        if self.receiver is not None and self.receiver.process.pid is not None:
            out[self.receiver.process.pid] = "receiver"
        out.update({pid: "load" for pid in self.load_pids})
        for daemon in self.daemons:
            role = daemon.name.split("-")[0]
            out.update({pid: role for pid in daemon.tree()})
            if role == "worker":
                # Dramatiq's main process: it forwards the worker processes' log lines.
                out[daemon.process.pid] = "worker-main"
        return out

    # -- shared steps -----------------------------------------------------------------------

    @property
    def rabbit(self) -> bool:
        """Tell whether the relay and workers use RabbitMQ (`Options.broker_url`)."""
        return bool(self.opts.broker_url)

    def _purge_rabbit(self) -> None:
        import pika

        from worker.queue import rabbitmq

        assert self.opts.broker_url is not None
        connection = pika.BlockingConnection(pika.URLParameters(self.opts.broker_url))
        try:
            # Purged, not deleted: the workers' consumers stay subscribed to it.
            channel = connection.channel()
            channel.queue_declare(
                queue=QUEUE, durable=True, arguments=rabbitmq.queue_arguments(QUEUE)
            )
            channel.queue_purge(QUEUE)
        finally:
            connection.close()

    def depth(self) -> int:
        """Return how many messages wait in the queue, on either broker."""
        if not self.rabbit:
            return int(self.rds.llen(queue.queue_key(QUEUE)))
        if self._queue is None:
            self._queue = broker_from_url(self.opts.broker_url or "", QUEUE)
        return self._queue.depth()

    def reset(self) -> None:
        """Empty the tables and the queue (the endpoints stay)."""
        self.conn.execute(_TRUNCATE)
        self.rds.delete(queue.queue_key(QUEUE), queue.messages_key(QUEUE))
        if self.rabbit:
            if self._queue is not None:
                self._queue.close()
                self._queue = None
            self._purge_rabbit()

    def state(self) -> dict[str, int]:
        """Return counts of unrelayed events and of deliveries by status."""
        row = self.conn.execute(_STATE).fetchone()
        assert row is not None
        return {k: int(v) for k, v in row.items()}

    def publish_batches(self, count: int, first: int = 0) -> list[str]:
        """Publish `count` events with publish_many, PUBLISH_BATCH per transaction."""
        ids: list[str] = []
        size = self.opts.payload_bytes
        for start in range(first, first + count, PUBLISH_BATCH):
            stop = min(first + count, start + PUBLISH_BATCH)
            with self.conn.transaction():
                ids += publish_many(
                    self.conn, [(EVENT_TYPE, payload(i, size)) for i in range(start, stop)]
                )
        return ids

    def wait_received(self, expected: int, watch: Sequence[Daemon]) -> dict[str, Any]:
        """Wait until the receiver has every (event, endpoint) once; fail if it stalls."""
        assert self.receiver is not None
        last, last_change = -1, time.monotonic()
        while True:
            summary = self.receiver.summary()
            if summary["ok_pairs"] >= expected:
                return summary
            for daemon in watch:
                daemon.check()
            if summary["ok_pairs"] != last:
                last, last_change = summary["ok_pairs"], time.monotonic()
            elif time.monotonic() - last_change > STALL_SECONDS:
                raise BenchError(
                    f"stalled: {summary['ok_pairs']} of {expected} deliveries received,"
                    f" none new for {STALL_SECONDS:.0f}s ({self.state()})"
                )
            time.sleep(0.01)

    def wait_settled(self, watch: Sequence[Daemon], timeout: float = 60.0) -> dict[str, int]:
        """Wait until every event is relayed and no delivery is pending."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if state["unrelayed"] == 0 and state["pending"] == 0:
                return state
            for daemon in watch:
                daemon.check()
            if time.monotonic() > deadline:
                raise BenchError(f"deliveries still pending after {timeout:.0f}s: {state}")
            time.sleep(0.02)

    def check_delivered(
        self, label: str, event_ids: Sequence[str], records: Records, state: dict[str, int]
    ) -> dict[str, Any]:
        """Compare what the receiver counted with what was published; note any loss."""
        _, paths, ids, codes = records
        wanted = {(e.encode(), p.encode()) for e in event_ids for p in self.endpoint_paths.values()}
        ok = [(i, p) for i, p, c in zip(ids, paths, codes, strict=True) if c == 200]
        received = set(ok)
        lost = len(wanted - received)
        result = {
            "expected": len(wanted),
            "received": len(received & wanted),
            "lost": lost,
            "duplicates": len(ok) - len(received),
            "unexpected": len(received - wanted),
            "failed_requests": codes.count(500),
            "deliveries": state["deliveries"],
            "succeeded": state["succeeded"],
            "dead": state["dead"],
            "pending": state["pending"],
            "attempts": state["attempts"],
            # Why attempts did not succeed: 500s from --fail-rate, and anything else (which,
            # with no --fail-rate, is what explains a duplicate).
            "unsuccessful_attempts": {
                f"{row['error_kind']}: {row['error']}"[:200]: int(row["n"])
                for row in self.conn.execute(_UNSUCCESSFUL).fetchall()
            },
        }
        if lost or state["succeeded"] != len(wanted) or state["deliveries"] != len(wanted):
            self.problems.append(f"{label}: {result}")
        return result

    # -- the figures ---------------------------------------------------------------------------

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

    def _wait_listening(self, daemon: Daemon, interval: float = 0.05) -> None:
        deadline = time.monotonic() + 60
        while True:
            row = self.conn.execute(_LISTENING, {"since": daemon.started}).fetchone()
            if row is not None and row["n"]:
                return
            daemon.check()
            if time.monotonic() > deadline:
                raise BenchError("the relay did not start listening within 60s")
            time.sleep(interval)

    def _wait_enqueued(self, expected: int, daemon: Daemon) -> float:
        """Poll the queue length until it holds `expected` messages; return when it did."""
        last, last_change = -1, time.monotonic()
        while True:
            depth = self.depth()
            if depth >= expected:
                return time.perf_counter()
            if depth != last:
                last, last_change = depth, time.monotonic()
            elif time.monotonic() - last_change > STALL_SECONDS:
                raise BenchError(f"relay stalled at {depth} of {expected} messages")
            daemon.check()
            time.sleep(0.002)

    def measure_relay(self) -> None:
        """Time the relay alone turning committed events into queued deliveries."""
        expected = self.opts.events * self.opts.endpoints
        relay = self.start("relay", "relay")
        self._wait_listening(relay)
        runs = []
        for r in range(self.opts.repeats):
            self.reset()
            events = [
                (EVENT_TYPE, payload(i, self.opts.payload_bytes)) for i in range(self.opts.events)
            ]
            with self.conn.transaction():
                publish_many(self.conn, events)
            committed = time.perf_counter()
            meter = CpuMeter(self.roles)
            meter.start()
            done = self._wait_enqueued(expected, relay)
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
        done = self._wait_enqueued(expected, relay)
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

    def measure_ceiling(self, threads: int) -> float:
        """Post pre-signed requests from as many processes x `threads` with bare clients."""
        assert self.receiver is not None
        n = self.opts.processes
        total = ceiling_requests(
            self.opts.events * self.opts.endpoints, n, threads, self.opts.receiver_delay
        )
        shares = [total // n + (1 if i < total % n else 0) for i in range(n)]
        urls = [self.receiver.url(f"/c/{k}") for k in range(self.opts.endpoints)]
        ctx = multiprocessing.get_context("spawn")
        go, out = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(
                target=_load_main,
                args=(
                    i,
                    urls,
                    self.ceiling_secret,
                    shares[i],
                    threads,
                    self.opts.payload_bytes,
                    go,
                    out,
                ),
                daemon=True,
            )
            for i in range(n)
            if shares[i]
        ]
        meter = CpuMeter(self.roles)
        try:
            for p in procs:
                p.start()
            self.load_pids = [p.pid for p in procs if p.pid is not None]
            for _ in procs:
                out.get(timeout=120)
            meter.start()
            go.set()
            spans = self._collect_load(out, len(procs))
            cpu = meter.stop()
        finally:
            for p in procs:
                p.join(10)
                if p.is_alive():
                    p.terminate()
            self.load_pids = []
        summary, _ = self.receiver.take()
        errors = sum(s[4] for s in spans)
        if errors or summary["ok_pairs"] != total:
            self.problems.append(
                f"ceiling: {errors} errors, receiver counted {summary['ok_pairs']} of {total}"
            )
        sent = sum(int(s[3]) for s in spans)
        rate = sent / (max(float(s[2]) for s in spans) - min(float(s[1]) for s in spans))
        self.results.setdefault("cpu_ceiling", []).append(cpu)
        return rate

    def _collect_load(self, out: Any, count: int) -> list[tuple[Any, ...]]:
        """Wait for every load process's result; fail only if the receiver stops counting."""
        assert self.receiver is not None
        spans: list[tuple[Any, ...]] = []
        last, last_change = -1, time.monotonic()
        while len(spans) < count:
            try:
                spans.append(out.get(timeout=1.0))
                continue
            except Empty:
                pass
            seen = int(self.receiver.summary()["requests"])
            if seen != last:
                last, last_change = seen, time.monotonic()
            elif time.monotonic() - last_change > STALL_SECONDS:
                raise BenchError(
                    f"ceiling stalled: {seen} requests received, none new for {STALL_SECONDS:.0f}s"
                )
        return spans

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
                event_id = publish(self.conn, EVENT_TYPE, payload(i, size))
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
        for row in self.conn.execute(_STAGES).fetchall():
            at = first.get((row["event_id"], self.endpoint_paths.get(row["endpoint_id"], "")))
            commit = committed.get(row["event_id"])
            if at is None or commit is None:
                continue
            stages["relay"].append(row["created"] - commit)
            stages["queue"].append(row["started"] - row["created"])
            stages["http"].append(at - row["started"])
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


# -- the report ----------------------------------------------------------------------------------


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
    m, o, c = res["machine"], res["options"], res["correctness"]
    rss = res["peak_rss_mib"]
    lat = res["latency_ms"]
    stages = res["latency_stages_ms"]
    inflight, pg = res.get("in_flight", {}), res.get("worker_pg_connections", {})
    deliveries = o["events"] * o["endpoints"]
    concurrency = o.get("concurrency") or "default"
    delay_ms = o.get("receiver_delay", 0.0) * 1000
    lines = [
        f"webhooks bench: {m['cpus']} CPUs ({m['cpu_model']}), load {m['load_average']},"
        f" Python {m['python']}, PostgreSQL {m['postgres']}"
        f" (synchronous_commit={m['postgres_synchronous_commit']}), Redis {m['redis']},"
        f" broker {m.get('broker', 'redis')}",
        f"  {o['events']:,} events x {o['endpoints']} endpoints = {deliveries:,} deliveries;"
        f" workers {o['processes']} processes x {o['threads']} threads,"
        f" concurrency {concurrency}; receiver delay {delay_ms:g} ms;"
        f" payload {o['payload_bytes']} B; fail rate {o['fail_rate']:g};"
        f" median of {o['repeats']} [min - max]",
        "",
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
    e2e = c["end_to_end"]
    dupes = sum(x["duplicates"] for x in e2e) + c["latency"]["duplicates"]
    failed = sum(x["failed_requests"] for x in e2e) + c["latency"]["failed_requests"]
    dead = sum(x["dead"] for x in e2e) + c["latency"]["dead"]
    lines += [
        "",
        f"correctness                     {'ok' if c['ok'] else 'FAILED'}: {c['lost']} lost,"
        f" {dupes} duplicates, {dead} dead, {failed} answered 500 and retried;"
        f" signatures {c['signatures_checked']} checked, {c['signatures_bad']} bad",
    ]
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
    lines.append("")
    lines.append("targets (2-core machine)")
    for name, t in res["targets"].items():
        value = t["value"]
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value}"
        lines.append(
            f"  {name:<28}{shown:>12}  {t['target']:<12} {'met' if t['met'] else 'MISSED'}"
        )
    return "\n".join(lines)
