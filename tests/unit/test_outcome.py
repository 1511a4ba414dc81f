"""Specify how one HTTP attempt is classified."""

from __future__ import annotations

import errno
import socket
import ssl
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from worker.errors import BlockedDestination
from worker.outcome import (
    ERROR_KINDS,
    Kind,
    Outcome,
    classify_error,
    classify_response,
    parse_retry_after,
)

NOW = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)
IN_90S = "Wed, 21 Oct 2015 07:28:30 GMT"
AN_HOUR_AGO = "Wed, 21 Oct 2015 06:27:00 GMT"


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (200, None, Outcome(Kind.SUCCEEDED, 200)),
        (204, None, Outcome(Kind.SUCCEEDED, 204)),
        (299, "5", Outcome(Kind.SUCCEEDED, 299)),
        (
            301,
            None,
            Outcome(Kind.FAILED, 301, "redirect", "HTTP 301 Moved Permanently (not followed)"),
        ),
        (302, None, Outcome(Kind.FAILED, 302, "redirect", "HTTP 302 Found (not followed)")),
        (
            307,
            None,
            Outcome(Kind.FAILED, 307, "redirect", "HTTP 307 Temporary Redirect (not followed)"),
        ),
        (
            308,
            None,
            Outcome(Kind.FAILED, 308, "redirect", "HTTP 308 Permanent Redirect (not followed)"),
        ),
        (410, "60", Outcome(Kind.GONE, 410, "gone", "HTTP 410 Gone")),
        (429, None, Outcome(Kind.THROTTLED, 429, "throttled", "HTTP 429 Too Many Requests")),
        (429, "30", Outcome(Kind.THROTTLED, 429, "throttled", "HTTP 429 Too Many Requests", 30.0)),
        (502, IN_90S, Outcome(Kind.THROTTLED, 502, "throttled", "HTTP 502 Bad Gateway", 90.0)),
        (
            503,
            AN_HOUR_AGO,
            Outcome(Kind.THROTTLED, 503, "throttled", "HTTP 503 Service Unavailable", 0.0),
        ),
        (
            504,
            "99999",
            Outcome(Kind.THROTTLED, 504, "throttled", "HTTP 504 Gateway Timeout", 3600.0),
        ),
        (503, "soon", Outcome(Kind.THROTTLED, 503, "throttled", "HTTP 503 Service Unavailable")),
        (400, None, Outcome(Kind.FAILED, 400, "http_status", "HTTP 400 Bad Request")),
        (404, None, Outcome(Kind.FAILED, 404, "http_status", "HTTP 404 Not Found")),
        (500, "10", Outcome(Kind.FAILED, 500, "http_status", "HTTP 500 Internal Server Error")),
        (501, None, Outcome(Kind.FAILED, 501, "http_status", "HTTP 501 Not Implemented")),
        (599, None, Outcome(Kind.FAILED, 599, "http_status", "HTTP 599")),
        (101, None, Outcome(Kind.FAILED, 101, "http_status", "HTTP 101 Switching Protocols")),
    ],
)
def test_classify_response(status: int, retry_after: str | None, expected: Outcome) -> None:
    assert classify_response(status, retry_after, NOW) == expected


def test_classify_response_caps_retry_after_at_the_given_maximum() -> None:
    outcome = classify_response(429, "600", NOW, max_retry_after=120)
    assert outcome.retry_after == 120


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        ("0", NOW, 0.0),
        ("120", NOW, 120.0),
        (" 7 ", NOW, 7.0),
        ("1.5", NOW, 1.5),
        (IN_90S, NOW, 90.0),
        (AN_HOUR_AGO, NOW, 0.0),
        ("Wed, 21 Oct 2015 07:28:30", NOW, 90.0),  # no zone: GMT
        ("Wednesday, 21-Oct-15 07:28:30 GMT", NOW, 90.0),  # RFC 850, still allowed
        ("Wed Oct 21 07:28:30 2015", NOW, 90.0),  # asctime, still allowed
        (IN_90S, NOW.replace(tzinfo=None), 90.0),  # naive clock: UTC
        ("-5", NOW, None),
        ("", NOW, None),
        ("soon", NOW, None),
        ("1e9", NOW, None),
        ("Wed, 99 Oct 2015 07:28:00 GMT", NOW, None),
    ],
)
def test_parse_retry_after(value: str, now: datetime, expected: float | None) -> None:
    assert parse_retry_after(value, now) == expected


def _raised(outer: BaseException, cause: BaseException) -> BaseException:
    """Return `outer` raised from `cause`, the way httpx and httpcore chain errors."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except BaseException as caught:
        return caught


def _cert_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] verify failed")
    error.verify_message = "self-signed certificate"  # set by the C layer in real errors
    return error


@pytest.mark.parametrize(
    ("exc", "error_kind", "error"),
    [
        (httpx.ConnectTimeout("x"), "timeout", "timed out connecting"),
        (httpx.ReadTimeout("x"), "timeout", "timed out waiting for the response"),
        (httpx.WriteTimeout("x"), "timeout", "timed out sending the request"),
        (httpx.PoolTimeout("x"), "timeout", "timed out waiting for a free connection"),
        (
            _raised(
                httpx.ConnectError("[Errno 111] Connection refused"),
                ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
            ),
            "connect",
            "connection refused",
        ),
        (
            _raised(
                httpx.ConnectError("[Errno 113] No route to host"),
                OSError(errno.EHOSTUNREACH, "No route to host"),
            ),
            "connect",
            "no route to host",
        ),
        (
            _raised(
                httpx.ConnectError("[Errno -2] Name or service not known"),
                socket.gaierror(-2, "Name or service not known"),
            ),
            "connect",
            "name or service not known",
        ),
        (httpx.ConnectError("something odd"), "connect", "something odd"),
        (
            _raised(httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]"), _cert_error()),
            "tls",
            "certificate verify failed: self-signed certificate",
        ),
        (
            _raised(
                httpx.ConnectError("wrapped"),
                _raised(OSError("httpcore"), ssl.SSLEOFError(8, "EOF occurred")),
            ),
            "tls",
            "TLS handshake failed: connection closed by peer",
        ),
        (
            httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number"),
            "tls",
            "[SSL: WRONG_VERSION_NUMBER] wrong version number",
        ),
        (
            _raised(
                httpx.ReadError("[Errno 104] Connection reset by peer"),
                ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
            ),
            "connect",
            "connection reset by peer",
        ),
        (httpx.WriteError(""), "connect", "connection lost"),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            "protocol",
            "Server disconnected without sending a response.",
        ),
        (httpx.LocalProtocolError("Illegal header value"), "protocol", "Illegal header value"),
        (
            httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'."),
            "protocol",
            "Request URL has an unsupported protocol 'ftp://'.",
        ),
        (httpx.DecodingError("x" * 500), "protocol", "x" * 199 + "…"),
        (
            BlockedDestination("db.internal", "private address 10.0.0.1"),
            "blocked",
            "blocked: private address 10.0.0.1",
        ),
        (ValueError("boom\nTraceback (most recent call last):"), "protocol", "ValueError: boom"),
    ],
)
def test_classify_error(exc: BaseException, error_kind: str, error: str) -> None:
    assert classify_error(exc) == Outcome(Kind.FAILED, None, error_kind, error)


def test_every_error_kind_is_listed() -> None:
    assert set(ERROR_KINDS) == {
        "http_status",
        "redirect",
        "timeout",
        "connect",
        "tls",
        "blocked",
        "protocol",
        "throttled",
        "gone",
    }


def test_retry_after_is_relative_to_the_given_clock() -> None:
    later = NOW + timedelta(seconds=60)
    assert parse_retry_after(IN_90S, later) == 30.0
