"""Processes on this machine: CPU and peak memory from /proc, sampling, child commands."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from worker.bench.options import SAMPLE_SECONDS, BenchError
from worker.store import bench


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # Linux: the child gets SIGTERM if the bench itself is killed, so nothing is left running.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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


#: The services' process names (RabbitMQ runs in an Erlang VM, beam.smp) and their roles.
_SERVICES = {"postgres": "postgres", "redis-server": "redis", "beam.smp": "rabbitmq"}


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
                role = _SERVICES.get(name, "other")
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
        n = bench.worker_connections(conn)
    except psycopg.Error:
        return None  # one lost sample; the phase goes on
    return float(n) if n is not None else None


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
                [sys.executable, "-P", "-m", "worker.cli", *args],
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
