"""The HTTP/1.1 protocol `webhooks api` serves: uvicorn's h11 one, with a deadline for headers.

uvicorn bounds how long an idle keep-alive connection stays, but not how long a client may
take over a request's line and headers: one byte every few seconds holds a connection, and
its file descriptor, for as long as the client likes (slowloris). `HeaderDeadline` closes a
connection whose request line and headers are not all in within ``timeout`` seconds of the
connection opening or of the previous answer, however the bytes trickle in. A body that
trickles after its headers is the application's to bound (`worker.api.limits`).
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

#: Seconds a client has to send a request's line and headers.
HEADER_TIMEOUT = 10.0


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose headers do not arrive in time."""

    timeout: ClassVar[float] = HEADER_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request's headers are due from now

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(self.timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        # No complete request head since the deadline was armed (their side still IDLE), or
        # a body still arriving for a request already answered (our side DONE): close.
        # Otherwise a request is being served, and its answer re-arms the deadline.
        if self.conn.their_state is h11.IDLE or self.conn.our_state is h11.DONE:
            self.transport.close()
