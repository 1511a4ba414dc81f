"""Bound request bodies while they are read: `BodyLimit`, an ASGI middleware.

A body is refused as soon as it is known to be too large, before any route, authentication
or parser sees it: unread when its Content-Length says so, else the moment the bytes received
pass the cap (a chunked body declares no length, and a declared length is not trusted). The
refusal closes the connection, so nothing more of the body is read. A body that stops
arriving for ``idle_timeout`` seconds is refused too (408), so a slow client cannot hold a
request open by trickling its body.

JSON bodies are parsed on the event loop (FastAPI does it there): the cap is what keeps that
short. A body at the cap (about 1 MiB with the default WEBHOOKS_MAX_PAYLOAD_BYTES) parses in
milliseconds; a thread would not help, as the parser holds the GIL throughout.

The API mounts it in `create_app`; any other application (the portal's forms) mounts the
same class with the same `body_cap`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.api.problems import Problem, answer

#: How much larger than WEBHOOKS_MAX_PAYLOAD_BYTES a request body may be: its JSON envelope,
#: indentation and escapes (a payload of control characters escapes to 6 bytes each).
BODY_SLACK = 4
#: Bytes allowed on top for the envelope's other fields.
ENVELOPE = 65536
#: Seconds a request body may pause between two pieces before it is refused.
BODY_IDLE_TIMEOUT = 30.0

#: Build the ASGI answer to a refused request from a status and a detail.
Refusal = Callable[[int, str], ASGIApp]


def body_cap(max_payload_bytes: int) -> int:
    """Return the largest request body accepted where payloads are up to the given size."""
    return max_payload_bytes * BODY_SLACK + ENVELOPE


def check_framing(headers: Iterable[tuple[bytes, bytes]], limit: int) -> tuple[int, str] | None:
    """Return (status, detail) refusing a request by its headers alone, or None to read it.

    Both Content-Length and Transfer-Encoding is how requests are smuggled past a proxy
    (RFC 9112 section 6.1 allows refusing it); a length that is not one number is malformed.
    """
    lengths = [value for name, value in headers if name.lower() == b"content-length"]
    chunked = any(name.lower() == b"transfer-encoding" for name, _ in headers)
    if lengths and chunked:
        return 400, "a request cannot have both Content-Length and Transfer-Encoding"
    if not lengths:
        return None
    if len(set(lengths)) != 1 or not lengths[0].strip().isdigit():
        return 400, "the Content-Length header is not one number"
    if int(lengths[0]) > limit:
        return 413, f"the request body is over {limit} bytes"
    return None


def problem(status: int, detail: str) -> ASGIApp:
    """Return the refusal as an RFC 9457 problem that closes the connection."""
    return answer(Problem(status, detail, headers={"connection": "close"}))


class BodyLimit:
    """Refuse (413) a request body over ``limit`` bytes as soon as it is known to be."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        *,
        idle_timeout: float | None = BODY_IDLE_TIMEOUT,
        refusal: Refusal = problem,
    ) -> None:
        self.app = app
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = check_framing(scope["headers"], self.limit)
        if refused is not None:
            await self.refusal(*refused)(scope, receive, send)
            return
        body = _CountedBody(self, scope, receive, send)
        await self.app(scope, body.receive, body.send)


class _CountedBody:
    """One request's receive and send, counting the body and refusing it past the cap."""

    def __init__(self, limit: BodyLimit, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit = limit
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0
        self.complete = False  # the whole body is in: later receives wait for a disconnect
        self.started = False  # the application began its answer
        self.refused = False  # ours was sent: the application's is dropped

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message: Message | None = None
        if self.complete or self.limit.idle_timeout is None:
            message = await self._receive()
        else:
            with anyio.move_on_after(self.limit.idle_timeout):
                message = await self._receive()
            if message is None:
                await self._refuse(
                    408, f"the request body stalled for {self.limit.idle_timeout:g} s"
                )
                return {"type": "http.disconnect"}
        if message["type"] == "http.request" and not self.complete:
            self.received += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
            if self.received > self.limit.limit:
                await self._refuse(413, f"the request body is over {self.limit.limit} bytes")
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def _refuse(self, status: int, detail: str) -> None:
        self.refused = True
        if not self.started:  # else the application answered already, and stopped reading
            await self.limit.refusal(status, detail)(self.scope, self._receive, self._send)
