"""Specify how an attempt that raised is classified (`worker.delivery.http.classify_failure`).

The exceptions are built the way aiohttp, asyncio and the guard raise them; the real
network paths that produce them are in tests/integration/test_transport.py.
"""

from __future__ import annotations

import errno
import socket
import ssl

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from aiohttp.http_exceptions import BadHttpMessage, ContentLengthError, TransferEncodingError
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from worker.delivery.http import classify_failure
from worker.errors import BlockedDestination
from worker.policy.outcome import ERROR_KINDS, Kind, Outcome

KEY = ConnectionKey("receiver.test", 443, True, True, None, None, None)
REQUEST = RequestInfo(
    URL("https://receiver.test/hook"),
    "POST",
    CIMultiDictProxy(CIMultiDict()),
    URL("https://receiver.test/hook"),
)


def _raised(outer: BaseException, cause: BaseException) -> BaseException:
    """Return `outer` raised from `cause`, the way aiohttp chains its errors."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except BaseException as caught:
        return caught


def _cert_error(message: str = "self-signed certificate") -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] verify failed")
    error.verify_message = message  # set by the C layer in real errors
    return error


def _refused() -> ConnectionRefusedError:
    # asyncio's sock_connect puts the address, not the errno's text, in strerror.
    return ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('203.0.113.9', 443)")


def _wrong_version() -> ssl.SSLError:
    error = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    error.reason = "WRONG_VERSION_NUMBER"  # set by the C layer in real errors
    return error


def _payload(cause: Exception) -> BaseException:
    return _raised(
        aiohttp.ClientPayloadError(f"Response payload is not completed: {cause!r}"), cause
    )


#: (exception, error_kind, error) for every way an attempt fails without an answer.
FAILURES: list[tuple[BaseException, str, str]] = [
    # -- blocked by the SSRF guard
    (
        BlockedDestination("db.internal", "private address 10.0.0.1"),
        "blocked",
        "blocked: private address 10.0.0.1",
    ),
    (
        BlockedDestination("nowhere.test", "does not resolve"),
        "blocked",
        "blocked: does not resolve",
    ),
    # -- timeouts
    (
        aiohttp.ConnectionTimeoutError("Connection timeout to host https://receiver.test/hook"),
        "timeout",
        "timed out connecting",
    ),
    (TimeoutError(), "timeout", "timed out waiting for the response"),
    (
        aiohttp.SocketTimeoutError("Timeout on reading data from socket"),
        "timeout",
        "timed out waiting for the response",
    ),
    # -- connecting
    (aiohttp.ClientConnectorError(KEY, _refused()), "connect", "connection refused"),
    (
        aiohttp.ClientConnectorError(KEY, OSError(errno.EHOSTUNREACH, "No route to host")),
        "connect",
        "no route to host",
    ),
    (
        # Happy eyeballs: every address failed alike, one errno and all the messages.
        aiohttp.ClientConnectorError(
            KEY,
            OSError(
                errno.ECONNREFUSED,
                "Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.2', 80), "
                "[Errno 111] Connect call failed ('127.0.0.1', 80)",
            ),
        ),
        "connect",
        "connection refused",
    ),
    (
        aiohttp.ClientConnectorError(KEY, OSError("Multiple exceptions: a, b")),
        "connect",
        "Multiple exceptions: a, b",
    ),
    (
        aiohttp.ClientConnectorDNSError(KEY, socket.gaierror(-2, "Name or service not known")),
        "connect",
        "name does not resolve",
    ),
    (
        aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"),
        "connect",
        "connection reset by peer",
    ),
    (aiohttp.ClientOSError(), "connect", "connection lost"),
    (
        aiohttp.ClientConnectionResetError("Cannot write to closing transport"),
        "connect",
        "Cannot write to closing transport",
    ),
    (
        aiohttp.ServerDisconnectedError(),
        "connect",
        "connection closed by the receiver before it answered",
    ),
    # -- TLS
    (
        aiohttp.ClientConnectorCertificateError(KEY, _cert_error()),
        "tls",
        "certificate verify failed: self-signed certificate",
    ),
    (
        aiohttp.ClientConnectorCertificateError(
            KEY, _cert_error("Hostname mismatch, certificate is not valid for 'receiver.test'.")
        ),
        "tls",
        "certificate verify failed: Hostname mismatch, certificate is not valid for"
        " 'receiver.test'.",
    ),
    (
        aiohttp.ClientConnectorCertificateError(KEY, ValueError("no certificate")),
        "tls",
        "certificate verify failed: no certificate",
    ),
    (
        _raised(aiohttp.ClientConnectorSSLError(KEY, _wrong_version()), _wrong_version()),
        "tls",
        "TLS handshake failed: wrong version number",
    ),
    (
        aiohttp.ClientConnectorSSLError(KEY, ssl.SSLEOFError(8, "EOF occurred")),
        "tls",
        "TLS handshake failed: connection closed by peer",
    ),
    # -- the response broke its own framing
    (
        aiohttp.ClientResponseError(
            REQUEST, (), status=400, message="Bad status line:\n  Invalid status code"
        ),
        "protocol",
        "Bad status line:",
    ),
    (aiohttp.ClientResponseError(REQUEST, (), status=400), "protocol", "invalid response"),
    (
        _payload(ContentLengthError("Not enough data to satisfy content length header.")),
        "protocol",
        "response body cut short: not enough data to satisfy content length header",
    ),
    (
        _payload(TransferEncodingError("Not enough data to satisfy transfer length header.")),
        "protocol",
        "response body cut short: not enough data to satisfy transfer length header",
    ),
    (
        _payload(BadHttpMessage("Invalid character in chunk size")),
        "protocol",
        "invalid response body: invalid character in chunk size",
    ),
    (aiohttp.ClientPayloadError("odd"), "protocol", "invalid response body"),
    # -- the URL itself (refused by aiohttp before any connection)
    (
        aiohttp.InvalidUrlClientError("2130706433", "is not a canonical IPv4 address"),
        "protocol",
        "invalid URL: 2130706433 (is not a canonical IPv4 address)",
    ),
    (aiohttp.InvalidURL("http://"), "protocol", "invalid URL: http://"),
    (
        aiohttp.NonHttpUrlClientError(URL("ftp://receiver.test/")),
        "protocol",
        "invalid URL: ftp://receiver.test/ (not http or https)",
    ),
    # -- anything else that reached the sender's boundary: recorded, never a traceback
    (OSError(errno.EHOSTUNREACH, "No route to host"), "connect", "no route to host"),
    (socket.gaierror(-2, "Name or service not known"), "connect", "name or service not known"),
    (OSError(), "connect", "connection failed"),
    (_cert_error(), "tls", "certificate verify failed: self-signed certificate"),
    (ssl.SSLEOFError(8, "EOF occurred"), "tls", "TLS handshake failed: connection closed by peer"),
    (ssl.SSLError(), "tls", "TLS handshake failed"),
    (ValueError("boom\nTraceback (most recent call last):"), "protocol", "ValueError: boom"),
    (RuntimeError(), "protocol", "RuntimeError"),
    (RuntimeError("x" * 500), "protocol", "RuntimeError: " + "x" * 185 + "…"),  # 200 in all
]


@pytest.mark.parametrize(
    ("exc", "error_kind", "error"),
    FAILURES,
    ids=[f"{type(exc).__name__}-{i}" for i, (exc, _, _) in enumerate(FAILURES)],
)
def test_classify_failure(exc: BaseException, error_kind: str, error: str) -> None:
    assert classify_failure(exc) == Outcome(Kind.FAILED, None, error_kind, error)


def test_every_failure_kind_is_a_listed_error_kind() -> None:
    kinds = {error_kind for _, error_kind, _ in FAILURES}
    assert kinds == {"timeout", "connect", "tls", "blocked", "protocol"}
    assert kinds <= set(ERROR_KINDS)
