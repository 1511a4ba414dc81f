"""The receiver's HTTP/1.1 server: one protocol for `webhooks dev`, `webhooks bench` and tests.

The protocol (keep-alive, pipelining, answers in request order) hands each complete request
to a ``respond`` function of the raw head, the body and the arrival time, and writes the raw
answer it returns, so the bench's tally stays as cheap per request as a hand-written loop.
It runs two ways: in the bench's own process, answering on the event loop, optionally after
a fixed delay (`worker.bench.tally`); or on a thread of its own with `Server` (the demo of
`webhooks dev`, the tests), each answer computed on a pool thread so that an answer may
block without holding up the others.
"""

from __future__ import annotations

import asyncio
import http
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import suppress

#: (status, extra headers, body) of one answer.
Answer = tuple[int, dict[str, str], bytes]
#: The raw head (no final blank line), the body and the arrival time -> the raw answer.
Respond = Callable[[bytes, bytes, float], bytes]

MAX_HEAD = 64 * 1024
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def header(head: bytes, lower: bytes, name: bytes) -> bytes | None:
    """Return the value of header `name` (lower case) in a raw head, None if absent."""
    at = lower.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


def response(code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """Return a raw HTTP/1.1 answer."""
    try:
        reason = http.HTTPStatus(code).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {code} {reason}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


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


class HttpConnection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining; just enough for webhook POSTs.

    With a delay, each answer is written that long after its request arrived, from a timer,
    so the other requests (on this connection and the others) go on meanwhile. With a pool,
    `respond` runs on a pool thread and the answers are written in request order.
    """

    def __init__(
        self,
        respond: Respond,
        in_flight: InFlight,
        delay: float = 0.0,
        pool: Executor | None = None,
        cut_short: Callable[[], None] | None = None,
    ) -> None:
        self.respond = respond
        self.in_flight = in_flight
        self.delay = delay
        self.pool = pool
        self.cut_short = cut_short
        self.buffer = bytearray()
        self.waiting: deque[bytes] = deque()  # answers not written yet, in request order
        self.slots: deque[list[bytes]] = deque()  # answers computed on the pool, in order
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        now = self.loop.time()
        for _ in range(len(self.waiting) + len(self.slots)):  # no longer in flight either
            self.in_flight.answered(now)
        self.waiting.clear()
        self.slots.clear()
        # A sender that vanished mid-body (a killed worker) made no delivery: say so.
        if self.cut_short is not None and b"\r\n\r\n" in self.buffer:
            self.cut_short()

    def _answer(self) -> None:
        # Each timer writes the oldest waiting answer, not "its own": HTTP/1.1 answers in
        # request order, and with one delay for all the oldest is the one that is due.
        if not self.waiting:
            return  # the connection was lost meanwhile
        answer = self.waiting.popleft()
        self.in_flight.answered(self.loop.time())
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(answer)

    def _defer(self, head: bytes, body: bytes, now: float, clock: float) -> None:
        assert self.pool is not None
        slot: list[bytes] = []
        self.slots.append(slot)
        self.in_flight.received(clock)
        done = self.pool.submit(self.respond, head, body, now)

        def back_on_the_loop(finished: Future[bytes]) -> None:
            with suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
                self.loop.call_soon_threadsafe(self._ready, slot, finished)

        done.add_done_callback(back_on_the_loop)

    def _ready(self, slot: list[bytes], done: Future[bytes]) -> None:
        exc = done.exception()
        # An answer that raised is a 500, as a receiver's crash would be.
        slot.append(response(500, body=repr(exc).encode()) if exc else done.result())
        while self.slots and self.slots[0]:
            answer = self.slots.popleft()[0]
            self.in_flight.answered(self.loop.time())
            assert self.transport is not None
            if not self.transport.is_closing():
                self.transport.write(answer)

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
                if len(buffer) > MAX_HEAD:
                    transport.write(BAD_REQUEST)
                    transport.close()
                return
            head = bytes(buffer[:end])
            length_text = header(head, head.lower(), b"content-length") or b"0"
            try:
                length = int(length_text)
            except ValueError:
                transport.write(BAD_REQUEST)
                transport.close()
                return
            total = end + 4 + length
            if len(buffer) < total:
                return
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            if self.pool is not None:
                self._defer(head, body, now, clock)
                continue
            answer = self.respond(head, body, now)
            self.in_flight.received(clock)
            if self.delay > 0:
                self.waiting.append(answer)
                self.loop.call_later(self.delay, self._answer)
            else:
                self.in_flight.answered(clock)
                transport.write(answer)


class Server:
    """Serve `respond` on a free loopback port from an event loop on a thread of its own.

    Answers are computed on up to `threads` pool threads, so one that blocks (a request
    held open) holds up nothing else; a worker opens hundreds of connections at once.
    """

    def __init__(
        self, respond: Respond, cut_short: Callable[[], None] | None = None, threads: int = 512
    ) -> None:
        self.respond = respond
        self.cut_short = cut_short
        self.port = 0
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="receiver")
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="receiver", daemon=True)

    def start(self) -> Server:
        """Start serving; return once the port is known."""
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the receiver did not start")
        return self

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._stop = loop, asyncio.Event()
        in_flight = InFlight(loop.time())
        connections: list[HttpConnection] = []

        def connection() -> HttpConnection:
            made = HttpConnection(self.respond, in_flight, pool=self.pool, cut_short=self.cut_short)
            connections.append(made)
            return made

        server = await loop.create_server(
            connection, "127.0.0.1", 0, backlog=1024, reuse_address=True
        )
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        await self._stop.wait()
        server.close()
        for made in connections:  # keep-alive connections end with the server
            if made.transport is not None:
                made.transport.close()

    def url(self, path: str) -> str:
        """Return the URL of a path on the receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        """Stop serving; answers still blocked are abandoned."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.pool.shutdown(wait=False, cancel_futures=True)
