"""The seam every attempt goes through: a `Sender` POSTs one request and returns the answer.

The engine and `deliver_one` type against the protocol; `worker.delivery.http.HttpSender`
implements it over aiohttp, and the tests' fake (`tests/fakes.py`) in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Response", "Sender"]


@dataclass(frozen=True)
class Response:
    """Hold what one attempt got back: status, Retry-After, the start of the body, time."""

    status_code: int
    retry_after: str | None
    body: bytes
    duration: float


class Sender(Protocol):
    """Send one attempt's request; long-lived, used from one event loop."""

    async def send(
        self, url: str, body: bytes, headers: Mapping[str, str], *, max_body: int
    ) -> Response:
        """POST `body` to `url` within the deadline and return at most `max_body` bytes.

        Failures propagate as raised, for `worker.delivery.http.classify_failure`.
        """
        ...

    async def close(self) -> None:
        """Release every connection the sender holds."""
        ...
