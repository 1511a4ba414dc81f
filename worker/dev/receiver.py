"""A real HTTP receiver on loopback for `webhooks dev` and the tests: records every request,
answers as each path is told, checks the signatures of the paths whose secret it knows.

It is served by `worker.dev.server`, the HTTP/1.1 protocol `webhooks bench` uses too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from worker.dev.server import Answer, Server, response
from worker.policy import signing

__all__ = [
    "Answer",
    "Receiver",
    "Request",
    "fail_first",
    "ok",
    "parse",
    "running_receiver",
    "status",
]


@dataclass
class Request:
    """One request as the receiver saw it; headers with lower-case names."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    #: The status it was answered with (0 until answered).
    status: int = 0
    #: Whether its signature verified; None when no secret is known for its path.
    verified: bool | None = None
    #: Why the signature was refused, if it was.
    problem: str = ""

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


def parse(head: bytes, body: bytes, at: float) -> Request:
    """Return the Request of a raw head and body."""
    line, *rest = head.decode("latin-1").split("\r\n")
    parts = line.split(" ")
    headers: dict[str, str] = {}
    for item in rest:
        name, _, value = item.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(parts[1] if len(parts) > 2 else "", headers, body, at)


def ok(_: int) -> Answer:
    return 200, {}, b"ok"


def status(code: int, headers: dict[str, str] | None = None) -> Callable[[int], Answer]:
    return lambda _: (code, headers or {}, b"nope")


def fail_first(k: int, code: int = 500) -> Callable[[int], Answer]:
    return lambda n: (code, {}, b"not yet") if n <= k else (200, {}, b"ok")


@dataclass
class Receiver:
    """Record requests; ``routes`` maps a path to a function of the request count on it.

    A path with a secret in ``secrets`` has every request's signature checked; one that
    does not verify is answered 401.
    """

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    routes: dict[str, Callable[[int], Answer]] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Requests whose sender vanished before the body ended (a killed worker): not answered.
    cut_short: int = 0
    #: Called with each request once answered (the demo prints a line).
    on_answer: Callable[[Request], None] | None = None

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

    def check(self, request: Request) -> str | None:
        """Return why the request's signature does not verify: "" if it does, None if no
        secret is known for its path (nothing to check)."""
        secret = self.secrets.get(request.path)
        if secret is None:
            return None
        given = request.headers
        good = signing.verify(
            secret,
            given.get("webhook-id", ""),
            given.get("webhook-timestamp", ""),
            request.body,
            given.get("webhook-signature", ""),
        )
        return "" if good else "signature does not verify"

    def answer(self, request: Request, n: int) -> Answer:
        """Return the answer to the `n`-th request on its path (from 1)."""
        return self.routes.get(request.path, ok)(n)

    def respond(self, head: bytes, body: bytes, now: float) -> bytes:
        """Record one request and return its raw answer (the `Respond` of `Server`)."""
        request = parse(head, body, now)
        with self.lock:
            self.requests.append(request)
            n = sum(1 for r in self.requests if r.path == request.path)
        problem = self.check(request)
        if problem is not None:
            request.problem, request.verified = problem, not problem
        answer: Answer = (401, {}, b"bad signature")
        if request.verified is not False:
            answer = self.answer(request, n)
        code, headers, payload = answer
        request.status = code
        if self.on_answer is not None:
            self.on_answer(request)
        return response(code, headers, payload)

    def note_cut_short(self) -> None:
        with self.lock:
            self.cut_short += 1


@contextmanager
def running_receiver(receiver: Receiver | None = None) -> Iterator[Receiver]:
    """Serve a receiver on a free loopback port for the duration of the block."""
    receiver = receiver or Receiver()
    server = Server(receiver.respond, cut_short=receiver.note_cut_short).start()
    receiver.port = server.port
    try:
        yield receiver
    finally:
        server.close()
