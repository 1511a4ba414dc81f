"""Classify one HTTP attempt: what the receiver answered, or how the request failed.

Delivery rules kept here: 2xx succeeds; 3xx fails (redirects are never followed); 410 marks
the endpoint gone; 429, 502, 503 and 504 throttle and honour ``Retry-After`` up to a cap;
timeouts, connection errors and every other status fail. Messages are short, never a
traceback, because they are stored on the attempt row and shown to operators.
"""

from __future__ import annotations

import email.utils
import enum
import errno
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TypeVar

import httpx

from worker.errors import BlockedDestination

__all__ = [
    "ERROR_KINDS",
    "THROTTLE_STATUSES",
    "Kind",
    "Outcome",
    "classify_error",
    "classify_response",
    "parse_retry_after",
]

THROTTLE_STATUSES = frozenset({429, 502, 503, 504})

#: Every value `Outcome.error_kind` can take (stored in ``attempts.error_kind``).
ERROR_KINDS = (
    "http_status",
    "redirect",
    "timeout",
    "connect",
    "tls",
    "blocked",
    "protocol",
    "throttled",
    "gone",
)

_MAX_MESSAGE = 200
_E = TypeVar("_E", bound=BaseException)
_DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?")


class Kind(enum.StrEnum):
    """Name what one attempt means for its delivery."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    THROTTLED = "throttled"
    GONE = "gone"


@dataclass(frozen=True)
class Outcome:
    """Hold the classification of one attempt."""

    kind: Kind
    status_code: int | None = None
    error_kind: str | None = None
    error: str | None = None
    retry_after: float | None = None


def classify_response(
    status: int,
    retry_after_header: str | None,
    now: datetime,
    max_retry_after: float = 3600,
) -> Outcome:
    """Return the outcome of a response with this status and ``Retry-After`` header."""
    if 200 <= status < 300:
        return Outcome(Kind.SUCCEEDED, status)
    if 300 <= status < 400:
        return Outcome(Kind.FAILED, status, "redirect", f"{_status_text(status)} (not followed)")
    if status == 410:
        return Outcome(Kind.GONE, status, "gone", _status_text(status))
    if status in THROTTLE_STATUSES:
        delay = None if retry_after_header is None else parse_retry_after(retry_after_header, now)
        if delay is not None:
            delay = min(delay, max_retry_after)
        return Outcome(Kind.THROTTLED, status, "throttled", _status_text(status), delay)
    return Outcome(Kind.FAILED, status, "http_status", _status_text(status))


def parse_retry_after(value: str, now: datetime) -> float | None:
    """Return the seconds a ``Retry-After`` value asks for, or None when it is unreadable.

    Accepts delta-seconds and HTTP-dates; a date in the past means 0.
    """
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        # Some servers send fractions; RFC 9110 says integer, being lenient costs nothing.
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # HTTP-dates are GMT; a naive value (``-0000``) or clock means UTC too.
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def classify_error(exc: BaseException) -> Outcome:
    """Return the outcome of a request that raised instead of answering."""
    if isinstance(exc, BlockedDestination):
        return _failed("blocked", f"blocked: {exc.reason}")
    if isinstance(exc, httpx.TimeoutException):
        return _failed("timeout", _timeout_message(exc))
    if isinstance(exc, httpx.ConnectError):
        tls = _find(exc, ssl.SSLError)
        if tls is not None:
            return _failed("tls", _tls_message(tls))
        if _mentions_tls(exc):
            return _failed("tls", _short(str(exc)))
        return _failed("connect", _os_message(exc, "connection failed"))
    if isinstance(exc, httpx.NetworkError):
        return _failed("connect", _os_message(exc, "connection lost"))
    if isinstance(exc, httpx.HTTPError):
        return _failed("protocol", _short(str(exc)) or type(exc).__name__)
    # Anything else reached the sender's boundary unexpectedly; record it without a traceback.
    if isinstance(exc, ssl.SSLError):
        return _failed("tls", _tls_message(exc))
    if isinstance(exc, OSError):
        return _failed("connect", _os_message(exc, "connection failed"))
    detail = _short(str(exc))
    name = type(exc).__name__
    return _failed("protocol", f"{name}: {detail}" if detail else name)


def _failed(error_kind: str, error: str) -> Outcome:
    return Outcome(Kind.FAILED, None, error_kind, error)


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _timeout_message(exc: httpx.TimeoutException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, httpx.WriteTimeout):
        return "timed out sending the request"
    if isinstance(exc, httpx.PoolTimeout):
        return "timed out waiting for a free connection"
    return "timed out waiting for the response"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _find(exc: BaseException, kind: type[_E]) -> _E | None:
    for item in _chain(exc):
        if isinstance(item, kind):
            return item
    return None


def _mentions_tls(exc: BaseException) -> bool:
    # httpx flattens the cause into the message; a chain may be lost when errors are re-raised.
    text = str(exc).lower()
    return any(word in text for word in ("ssl", "tls", "certificate"))


def _tls_message(exc: ssl.SSLError) -> str:
    # The C layer sets verify_message and reason; an SSLError built in Python has neither.
    verify_message = getattr(exc, "verify_message", None)
    if isinstance(verify_message, str) and verify_message:
        return _short(f"certificate verify failed: {verify_message}")
    if isinstance(exc, ssl.SSLEOFError):
        return "TLS handshake failed: connection closed by peer"
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return _short(f"TLS handshake failed: {reason.lower().replace('_', ' ')}")
    return "TLS handshake failed"


def _os_message(exc: BaseException, fallback: str) -> str:
    os_error = _find(exc, OSError)
    if os_error is not None:
        if os_error.errno == errno.ECONNRESET:
            return "connection reset by peer"
        # strerror also covers getaddrinfo's negative codes, which os.strerror does not know.
        if os_error.strerror:
            return _short(os_error.strerror.lower())
        if os_error.errno and os_error.errno > 0:
            return os.strerror(os_error.errno).lower()
    return _short(str(exc)) or fallback


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"
