"""A real HTTP receiver for tests: records every request, answers as each path is told."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Request:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """Record requests; ``routes`` maps a path to a function of the request count on it."""

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    routes: dict[str, Callable[[int], Answer]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str, answer: Callable[[int], Answer]) -> str:
        """Answer requests to ``path`` with ``answer(n)`` (n counts from 1); return its URL."""
        self.routes[path] = answer
        return self.url(path)

    def to(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 20.0) -> list[Request]:
        """Wait until ``path`` got at least ``count`` requests; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.to(path)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"{path}: got {len(self.to(path))} requests, wanted {count}")


def ok(_: int) -> Answer:
    return 200, {}, b"ok"


def status(code: int, headers: dict[str, str] | None = None) -> Callable[[int], Answer]:
    return lambda _: (code, headers or {}, b"nope")


def fail_first(k: int, code: int = 500) -> Callable[[int], Answer]:
    return lambda n: (code, {}, b"not yet") if n <= k else (200, {}, b"ok")


def fail_each_event_first(receiver: Receiver, path: str, k: int) -> Callable[[int], Answer]:
    """Fail the first ``k`` requests of every event (by webhook-id) on ``path``, then 200."""

    def answer(n: int) -> Answer:
        with receiver.lock:
            on_path = [r for r in receiver.requests if r.path == path]
            event = on_path[n - 1].headers["webhook-id"]  # the n-th is this very request
            seen = sum(1 for r in on_path if r.headers["webhook-id"] == event)
        return (500, {}, b"not yet") if seen <= k else (200, {}, b"ok")

    return answer


def down_until(heal_at: Callable[[], float]) -> Callable[[int], Answer]:
    """Answer 500 until the time ``heal_at()`` returns, then 200."""
    return lambda _: (500, {}, b"down") if time.time() < heal_at() else (200, {}, b"ok")


def hold_until(released: threading.Event) -> Callable[[int], Answer]:
    """Hold each request open until ``released`` is set (a minute at most), then answer 200."""

    def answer(_: int) -> Answer:
        released.wait(60)
        return 200, {}, b"ok"

    return answer


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """Start a receiver on a free loopback port for the duration of the block."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            path = self.path
            with receiver.lock:
                receiver.requests.append(
                    Request(
                        path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
                    )
                )
                n = sum(1 for r in receiver.requests if r.path == path)
            answer = receiver.routes.get(path, ok)
            code, headers, payload = answer(n)
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        # A worker opens hundreds of connections at once; the default backlog of 5 would
        # refuse most of them.
        request_queue_size = 512
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
