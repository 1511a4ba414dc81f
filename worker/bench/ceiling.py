"""The ceiling: bare httpx clients posting pre-signed requests, no database, no queue."""

from __future__ import annotations

import json
import multiprocessing
import signal
import threading
import time
from queue import Empty
from typing import Any

import httpx

from worker.bench.figures import ceiling_requests, envelope_bytes
from worker.bench.options import EVENT_TYPE, BenchError, payload
from worker.bench.steps import Steps, stall_seconds
from worker.bench.system import CpuMeter
from worker.bench.tally import hmac_signature, signing_key

Signed = list[tuple[str, dict[str, str]]]
#: (started, finished, sent, errors) of one thread's share.
Span = tuple[float, float, int, int]


def _presign(index: int, urls: list[str], secret: str, count: int, body: bytes) -> Signed:
    """Return `count` (url, headers) pairs, signed now, before the clock starts."""
    key = signing_key(secret)
    stamp = str(int(time.time())).encode()
    requests: Signed = []
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
    return requests


def _post(mine: Signed, body: bytes, spans: list[Span], lock: threading.Lock) -> None:
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
    body_json = json.dumps(payload(0, payload_bytes), separators=(",", ":"))
    body = envelope_bytes(EVENT_TYPE, body_json)
    requests = _presign(index, urls, secret, count, body)
    spans: list[Span] = []
    lock = threading.Lock()
    workers = [
        threading.Thread(target=_post, args=(requests[t::threads], body, spans, lock))
        for t in range(threads)
    ]
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


class Ceiling(Steps):
    """Measure the ceiling: what the receiver takes from bare clients, for the ratio."""

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
            elif time.monotonic() - last_change > (window := stall_seconds()):
                raise BenchError(
                    f"ceiling stalled: {seen} requests received, none new for {window:.0f}s"
                )
        return spans
