"""The worker processes' metric files, and their process metrics summed over the group.

Workers run as several Dramatiq processes, so their counters and histograms use
prometheus_client's multiprocess mode: `webhooks worker` points PROMETHEUS_MULTIPROC_DIR at a
directory emptied at start, each process writes its own files there, and one endpoint
process (`worker.observe.health.serve_workers`) sums them at scrape time.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import dramatiq
from prometheus_client import ProcessCollector
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.errors import WebhooksError

#: Name prefix of the temporary directory `webhooks worker` makes for its metric files.
TEMPORARY_PREFIX = "webhooks-metrics-"


class MarkProcessDead(dramatiq.Middleware):
    """Drop a stopping worker process's live gauges from the multiprocess directory."""

    def __init__(self, path: str) -> None:
        self.path = path

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        prometheus_multiprocess.mark_process_dead(os.getpid(), self.path)  # type: ignore[no-untyped-call]


def prepare_multiproc_dir(configured: str | None) -> str:
    """Return an empty directory for the worker processes' metric files.

    ``configured`` (an operator's PROMETHEUS_MULTIPROC_DIR) is created if missing and
    emptied of metric files, which a previous run may have left: their counts would
    otherwise be added to this run's. Without one, a fresh temporary directory is made.
    """
    try:
        if not configured:
            return tempfile.mkdtemp(prefix=TEMPORARY_PREFIX)
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return str(path)
    except OSError as exc:
        raise WebhooksError(
            f"PROMETHEUS_MULTIPROC_DIR: cannot prepare {configured or 'a temporary directory'}:"
            f" {exc.strerror or exc}"
        ) from exc


def clear_multiproc_dir(path: str) -> None:
    """Delete the metric files of a stopping `webhooks worker`.

    The directory goes too if `prepare_multiproc_dir` made it; an operator's stays.
    """
    folder = Path(path)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    if folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith(TEMPORARY_PREFIX):
        with contextlib.suppress(OSError):
            folder.rmdir()


def children(pid: int, proc: str = "/proc") -> list[int]:
    """Return the ids of the processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            stat = Path(proc, name, "stat").read_bytes()
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(name))
    return found


class ProcessGroupCollector(Collector):
    """Export process_* metrics summed over a Dramatiq main process and its children.

    The worker processes, not the endpoint process serving the scrape, do the work; CPU,
    memory and file descriptors are therefore added up over the whole group. Start time and
    the file descriptor limit are the main process's.
    """

    _FROM_ROOT = ("process_start_time_seconds", "process_max_fds")

    def __init__(self, root_pid: int, proc: str = "/proc") -> None:
        self.root_pid = root_pid
        self.proc = proc

    def collect(self) -> Iterable[Metric]:
        totals: dict[str, Metric] = {}
        for pid in [self.root_pid, *children(self.root_pid, self.proc)]:
            one = ProcessCollector(pid=functools.partial(int, pid), proc=self.proc, registry=None)
            for family in one.collect():
                if not family.samples:
                    continue
                value = family.samples[0].value
                kept = totals.get(family.name)
                if kept is None:
                    cls = CounterMetricFamily if family.type == "counter" else GaugeMetricFamily
                    help_text = family.documentation
                    if family.name not in self._FROM_ROOT:
                        help_text += " Summed over the worker's processes."
                    totals[family.name] = cls(family.name, help_text, value=value)
                elif family.name not in self._FROM_ROOT:
                    sample = kept.samples[0]
                    kept.samples[0] = sample._replace(value=sample.value + value)
        return list(totals.values())
