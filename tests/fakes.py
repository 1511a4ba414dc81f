"""In-memory fakes of the product's seams, for fast tests of the loops built over them.

`FakeSender` stands where `worker.delivery.http.HttpSender` does (the `Sender` protocol):
no sockets, every request recorded, each answered as its script says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from worker.delivery.sender import Response


@dataclass(frozen=True)
class Reply:
    """One scripted answer: after `delay` seconds, `error` raised, else the status given."""

    status: int = 200
    delay: float = 0.0
    body: bytes = b""
    retry_after: str | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class SentRequest:
    """One request a `FakeSender` was asked to send."""

    url: str
    body: bytes
    headers: dict[str, str]
    max_body: int


class FakeSender:
    """A `Sender` that records every request and answers from a script, in memory.

    The n-th request gets the n-th of ``replies``, every later one ``then``; a reply is a
    `Reply`, a bare status code, or an exception to raise (as the real sender raises a
    timeout or a refused connection, for `classify_failure`).
    """

    def __init__(
        self, *replies: Reply | int | BaseException, then: Reply | int | BaseException = 200
    ) -> None:
        self._replies = [_reply(r) for r in replies]
        self._then = _reply(then)
        self.requests: list[SentRequest] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.closed = False

    async def send(
        self, url: str, body: bytes, headers: Mapping[str, str], *, max_body: int
    ) -> Response:
        n = len(self.requests)
        self.requests.append(SentRequest(url, body, dict(headers), max_body))
        reply = self._replies[n] if n < len(self._replies) else self._then
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(reply.delay)
        finally:
            self.in_flight -= 1
        if reply.error is not None:
            raise reply.error
        return Response(reply.status, reply.retry_after, reply.body[:max_body], reply.delay)

    async def close(self) -> None:
        self.closed = True


def _reply(answer: Reply | int | BaseException) -> Reply:
    if isinstance(answer, Reply):
        return answer
    if isinstance(answer, BaseException):
        return Reply(error=answer)
    return Reply(status=answer)
