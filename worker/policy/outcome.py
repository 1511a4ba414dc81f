"""Classify one HTTP attempt: what the receiver answered (pure; the transport maps its own
exceptions to these failure kinds, `worker.delivery.http.classify_failure`).

Delivery rules kept here: 2xx succeeds; 3xx fails (redirects are never followed); 410 marks
the endpoint gone; 429, 502, 503 and 504 throttle and honour ``Retry-After`` up to a cap;
timeouts, connection errors and every other status fail. Messages are short, never a
traceback, because they are stored on the attempt row and shown to operators.
"""

from __future__ import annotations

import email.utils
import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus

__all__ = [
    "ERROR_KINDS",
    "THROTTLE_STATUSES",
    "ErrorKind",
    "Kind",
    "Outcome",
    "classify_response",
    "parse_retry_after",
    "short",
]

THROTTLE_STATUSES = frozenset({429, 502, 503, 504})


class ErrorKind(enum.StrEnum):
    """Name why an attempt failed (stored in ``attempts.error_kind``, counted in metrics)."""

    HTTP_STATUS = "http_status"
    REDIRECT = "redirect"
    TIMEOUT = "timeout"
    CONNECT = "connect"
    TLS = "tls"
    BLOCKED = "blocked"
    PROTOCOL = "protocol"
    THROTTLED = "throttled"
    GONE = "gone"
    SECRET = "secret"


#: Every value `Outcome.error_kind` can take.
ERROR_KINDS = tuple(kind.value for kind in ErrorKind)

_MAX_MESSAGE = 200
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
    error_kind: ErrorKind | None = None
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
        return Outcome(
            Kind.FAILED, status, ErrorKind.REDIRECT, f"{_status_text(status)} (not followed)"
        )
    if status == 410:
        return Outcome(Kind.GONE, status, ErrorKind.GONE, _status_text(status))
    if status in THROTTLE_STATUSES:
        delay = None if retry_after_header is None else parse_retry_after(retry_after_header, now)
        if delay is not None:
            delay = min(delay, max_retry_after)
        return Outcome(Kind.THROTTLED, status, ErrorKind.THROTTLED, _status_text(status), delay)
    return Outcome(Kind.FAILED, status, ErrorKind.HTTP_STATUS, _status_text(status))


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


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def short(text: str) -> str:
    """Return the first line of `text`, cut to a length an attempt row can show."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"
