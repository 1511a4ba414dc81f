"""Specify how one HTTP attempt that got an answer is classified.

Attempts that raised instead are classified by the transport: tests/unit/test_http_failures.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.test_http_failures import FAILURES
from worker.policy.outcome import (
    ERROR_KINDS,
    Kind,
    Outcome,
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


def test_every_error_kind_is_listed() -> None:
    # What an answer can mean (every status) and what a failure can mean (the transport's
    # table, tests/unit/test_http_failures.py) and a secret the worker cannot open are
    # together exactly the listed kinds.
    from_responses = {
        classify_response(status, "1", NOW).error_kind for status in range(100, 600)
    } - {None}
    from_failures = {error_kind for _, error_kind, _ in FAILURES}
    assert from_responses | from_failures | {"secret"} == set(ERROR_KINDS)
    assert len(ERROR_KINDS) == len(set(ERROR_KINDS))
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
        "secret",
    }


def test_retry_after_is_relative_to_the_given_clock() -> None:
    later = NOW + timedelta(seconds=60)
    assert parse_retry_after(IN_90S, later) == 30.0
